"""Finds jobs whose worker died and queued jobs RQ never received.

It runs inside the scheduler process (``manage.py scheduler portal.cron``), never as an RQ job:
when the only worker is dead there is nobody to run an RQ job, and that is exactly when a lost
job has to be noticed.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

import django_rq
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rq.job import Job as RQJob

from portal.jobs.queueing import push, rq_id
from portal.jobs.runner import get_runner
from portal.models import Job, JobLogLine

logger = logging.getLogger("corral.jobs")

# A queued job younger than this may still be between its commit and its push: leave it alone.
QUEUED_GRACE_SECONDS = 2.0
WAITING_FOR_QUEUE = "Waiting for the job queue"


def stale_before(now: datetime | None = None) -> datetime:
    """Heartbeats older than this mean the job's worker is gone."""
    return (now or timezone.now()) - timedelta(seconds=settings.JOB_STALE_SECONDS)


def heartbeat_is_stale(job: Job, now: datetime | None = None) -> bool:
    """A running job silent for JOB_STALE_SECONDS has lost its worker (the reaper's own test)."""
    if job.status != Job.Status.RUNNING:
        return False
    since = job.heartbeat_at or job.started_at
    return since is None or since < stale_before(now)


def mark_lost(job: Job, now: datetime | None = None) -> str | None:
    """Pause (resumable kinds) or fail a running job whose worker went silent.

    Returns the new status, or None when the job moved on meanwhile (a heartbeat, a finish).
    """
    now = now or timezone.now()
    try:
        runner = get_runner(job.kind)
        resumable = runner.resumable
    except LookupError:
        runner, resumable = None, False
    since = job.heartbeat_at or job.started_at or now
    reason = f"worker {job.worker or '?'} stopped responding (last heartbeat {since:%Y-%m-%d %H:%M:%S} UTC)"
    fields = {"error": reason, "heartbeat_at": now}
    if resumable:
        fields.update(status=Job.Status.PAUSED, progress_message="Worker lost: resume to continue")
        reason += "; the job is paused and can be resumed where it stopped"
    else:
        fields.update(status=Job.Status.FAILED, finished_at=now)
    if not Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat_at=job.heartbeat_at).update(**fields):
        return None
    JobLogLine.objects.create(job=job, level="error", message=reason)
    if runner is not None:
        try:
            runner.on_lost(job, reason)
        except Exception:  # noqa: BLE001 - one runner's hook must not stop the reaper
            logger.exception("on_lost hook of %s failed", job.kind)
    return fields["status"]


def reap_lost_jobs() -> dict[str, int]:
    """A running job whose heartbeat went silent is paused or failed; queued jobs RQ lost are pushed again."""
    now = timezone.now()
    stale = stale_before(now)
    lost = failed = 0
    for job in Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    ):
        status = mark_lost(job, now)
        if status is not None:
            lost += 1
            failed += status == Job.Status.FAILED
    requeued = requeue_unsent(now)
    if lost or requeued:
        logger.warning("reaper: %d lost jobs (%d failed), %d queued jobs pushed again", lost, failed, requeued)
    return {"lost": lost, "failed": failed, "requeued": requeued}


def requeue_unsent(now: datetime | None = None) -> int:
    """Push queued jobs RQ does not hold (accepted while Redis was down, or lost with Redis's data)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=QUEUED_GRACE_SECONDS)
    queued = list(Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=cutoff).order_by("created_at"))
    if not queued:
        return 0
    if not _redis_answers():
        logger.info("reaper: %d queued jobs wait for the job queue to come back", len(queued))
        return 0
    requeued = 0
    for job in queued:
        if _rq_job_exists(job) or not push(job):
            continue
        requeued += 1
        Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED, progress_message__startswith=WAITING_FOR_QUEUE).update(
            progress_message="")
    return requeued


def _redis_answers() -> bool:
    try:
        return bool(django_rq.get_connection("default").ping())
    except Exception:  # noqa: BLE001 - any Redis trouble means: not now
        return False


def _rq_job_exists(job: Job) -> bool:
    try:
        rq_job = RQJob.fetch(rq_id(job), connection=django_rq.get_connection(job.queue))
    except Exception:  # noqa: BLE001 - missing job or Redis trouble: push() decides
        return False
    return rq_job.get_status(refresh=True) not in ("failed", "stopped", "canceled", "finished")
