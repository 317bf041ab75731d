"""Finds jobs whose worker died and queued jobs RQ never received."""
from __future__ import annotations

import logging
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from rq.job import Job as RQJob

from portal.jobs.queueing import push, rq_id
from portal.jobs.runner import get_runner
from portal.models import Job, JobLogLine

logger = logging.getLogger("corral.jobs")


def reap_lost_jobs() -> dict[str, int]:
    """Run by the scheduler: a running job whose heartbeat went silent is paused or failed."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_SECONDS)
    lost = failed = 0
    for job in Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    ):
        try:
            resumable = get_runner(job.kind).resumable
        except LookupError:
            resumable = False
        since = job.heartbeat_at or job.started_at
        reason = f"worker {job.worker or '?'} stopped responding (last heartbeat {since:%Y-%m-%d %H:%M:%S} UTC)"
        fields = {"error": reason, "heartbeat_at": now}
        if resumable:
            fields.update(status=Job.Status.PAUSED, progress_message="Worker lost: resume to continue")
            reason += "; the job is paused and can be resumed where it stopped"
        else:
            fields.update(status=Job.Status.FAILED, finished_at=now)
            failed += 1
        if Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat_at=job.heartbeat_at).update(**fields):
            JobLogLine.objects.create(job=job, level="error", message=reason)
            lost += 1
            try:
                get_runner(job.kind).on_lost(job, reason)
            except Exception:  # noqa: BLE001 - one runner's hook must not stop the reaper
                logger.exception("on_lost hook of %s failed", job.kind)
    requeued = 0
    for job in Job.objects.filter(status=Job.Status.QUEUED, created_at__lt=stale):
        if not _rq_job_exists(job) and push(job):
            requeued += 1
    if lost or requeued:
        logger.warning("reaper: %d lost jobs (%d failed), %d queued jobs pushed again", lost, failed, requeued)
    return {"lost": lost, "failed": failed, "requeued": requeued}


def _rq_job_exists(job: Job) -> bool:
    try:
        rq_job = RQJob.fetch(rq_id(job), connection=django_rq.get_connection(job.queue))
    except Exception:  # noqa: BLE001 - missing job or Redis trouble: push() decides
        return False
    return rq_job.get_status(refresh=True) not in ("failed", "stopped", "canceled", "finished")
