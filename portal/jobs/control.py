"""Cancel and resume: the two things an operator does to a job."""
from __future__ import annotations

import logging

import django_rq
from django.db import transaction
from django.utils import timezone
from rq.job import Job as RQJob

from portal import audit
from portal.jobs.runner import get_runner
from portal.models import Job, JobLogLine

logger = logging.getLogger("corral.jobs")


class JobStateError(Exception):
    """The job is not in a state that allows the requested change."""


def cancel(job: Job, user=None) -> Job:
    """A queued or paused job is cancelled at once; a running one stops at its next checkpoint."""
    who = f" by {user}" if user is not None and getattr(user, "is_authenticated", False) else ""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in Job.FINISHED:
            raise JobStateError(f"the job has already {job.status}")
        if job.status == Job.Status.RUNNING:
            job.cancel_requested = True
            job.progress_message = "Cancelling…"
            job.save(update_fields=["cancel_requested", "progress_message"])
            JobLogLine.objects.create(job=job, message=f"Cancellation requested{who}")
            audit.record("cancel", job, user=user)
            return job
        job.status = Job.Status.CANCELLED
        job.cancel_requested = True
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "cancel_requested", "finished_at"])
        JobLogLine.objects.create(job=job, message=f"Cancelled{who} before it ran")
        audit.record("cancel", job, user=user)
        transaction.on_commit(lambda: _drop_rq_job(job))
    return job


def _drop_rq_job(job: Job) -> None:
    from portal.jobs.queueing import rq_id

    try:
        conn = django_rq.get_connection(job.queue)
        RQJob.fetch(rq_id(job), connection=conn).cancel()
    except Exception as exc:  # noqa: BLE001 - the row says cancelled; the worker will skip it anyway
        logger.info("could not remove RQ job of %s: %s", job.pk, exc)


def is_resumable(job: Job) -> bool:
    """Paused, failed with a resumable runner, or running with a stale heartbeat (its worker is gone).

    The API's ``capabilities.resume`` and the admin's Resume button use this, and :func:`resume`
    refuses exactly what it refuses, so whatever is offered works.
    """
    from portal.jobs.reaper import heartbeat_is_stale

    if job.status == Job.Status.PAUSED:
        return True
    try:
        resumable = get_runner(job.kind).resumable
    except LookupError:
        return False
    if job.status == Job.Status.FAILED:
        return resumable
    return resumable and heartbeat_is_stale(job)


def resume(job: Job, user=None) -> Job:
    """Queue a paused job (or a failed resumable one) again; its runner continues from stored state."""
    from portal.jobs.queueing import push
    from portal.jobs.reaper import mark_lost

    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if not is_resumable(job):
            raise JobStateError(f"a {job.status} {job.kind} job cannot be resumed")
        if job.status == Job.Status.RUNNING:  # its worker went silent: do now what the reaper would do next
            mark_lost(job)
            job.refresh_from_db()
        job.status = Job.Status.QUEUED
        job.cancel_requested = False
        job.finished_at = None
        job.progress_message = "Queued to resume"
        job.save(update_fields=["status", "cancel_requested", "finished_at", "progress_message"])
        who = f" by {user}" if user is not None and getattr(user, "is_authenticated", False) else ""
        JobLogLine.objects.create(job=job, message=f"Resume requested{who}")
        audit.record("resume", job, user=user)
        transaction.on_commit(lambda: push(job))
    return job
