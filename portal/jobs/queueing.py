"""Enqueue a job so its row and its RQ job never disagree, and run it on the worker."""
from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from typing import Any

import django_rq
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from portal.crypto import redact
from portal.jobs.runner import JobCancelled, JobFailed, JobPaused, JobSuperseded, get_runner
from portal.models import Job, JobLogLine

logger = logging.getLogger("corral.jobs")


def _cluster_of(target: Any):
    from clusters.models import Cluster

    if isinstance(target, Cluster):
        return target
    return getattr(target, "cluster", None)


def enqueue(kind: str, *, target: Any = None, user=None, params: dict | None = None, cluster=None) -> Job:
    """Create the Job row and hand it to RQ once the surrounding transaction commits."""
    runner = get_runner(kind)
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    job = Job(
        kind=kind,
        queue=runner.queue,
        params=params or {},
        created_by=user,
        cluster=cluster if cluster is not None else _cluster_of(target),
    )
    if target is not None:
        job.target = target
        job.target_repr = str(target)[:200]
    with transaction.atomic():
        job.save()
        transaction.on_commit(lambda: push(job))
    return job


def rq_id(job: Job) -> str:
    return f"{job.pk.hex}-{job.attempts}"


def push(job: Job) -> bool:
    """Put a committed, queued job on its RQ queue; a Redis outage leaves it queued for the reaper."""
    runner = get_runner(job.kind)
    try:
        django_rq.get_queue(job.queue).enqueue(
            execute,
            str(job.pk),
            job_id=rq_id(job),
            job_timeout=runner.timeout,
            result_ttl=3600,
            failure_ttl=7 * 24 * 3600,
            description=f"{job.kind} {job.target_repr}".strip(),
        )
    except Exception as exc:  # noqa: BLE001 - Redis down must not lose the job
        logger.warning("job %s stays queued, the job queue is unreachable: %s", job.pk, exc)
        Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            progress_message=f"Waiting for the job queue: {exc}"[:255]
        )
        return False
    return True


class _Heartbeat(threading.Thread):
    """Marks the job alive while it runs; silence tells the reaper the worker is gone.

    A database error in one beat (a restarted server, a dropped connection) is logged and the
    broken connection closed, so the next beat reconnects: one bad beat must not make a healthy
    job look lost. Only this attempt's row is touched, so a stale run never refreshes a newer one.
    """

    def __init__(self, job_id, attempts: int | None = None):
        super().__init__(name=f"job-heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.attempts = attempts
        self.stopped = threading.Event()
        self.failures = 0

    def beat(self) -> int:
        """Write one heartbeat; the number of rows updated (0 once the job left ``running``)."""
        rows = Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING)
        if self.attempts is not None:
            rows = rows.filter(attempts=self.attempts)
        return rows.update(heartbeat_at=timezone.now())

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    self.beat()
                except Exception as exc:  # noqa: BLE001 - retry at the next beat on a fresh connection
                    self.failures += 1
                    logger.warning("job %s heartbeat failed (%s); retrying at the next beat", self.job_id,
                                   str(exc).strip()[:300])
                    _close_connection()
        finally:
            _close_connection()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def _close_connection() -> None:
    """Close this thread's database connection, even a broken one."""
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; it is gone either way
        pass


def _worker_name() -> str:
    try:
        from rq import get_current_job

        current = get_current_job()
        if current is not None and current.worker_name:
            return f"{current.worker_name} (pid {os.getpid()})"
    except Exception:  # noqa: BLE001
        pass
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim(job_id: str) -> Job | None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s no longer exists; nothing to run", job_id)
            return None
        if job.status != Job.Status.QUEUED:
            logger.info("job %s is %s, not queued; not running it", job_id, job.status)
            return None
        now = timezone.now()
        job.status = Job.Status.RUNNING
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.worker = _worker_name()[:200]
        job.attempts += 1
        job.finished_at = None
        job.error = ""
        job.progress_message = ""
        job.save(update_fields=[
            "status", "started_at", "heartbeat_at", "worker", "attempts", "finished_at", "error", "progress_message"
        ])
    return job


def _finish(job: Job, status: str, *, error: str = "", result: Any = None) -> None:
    fields = {"status": status, "error": redact(error), "heartbeat_at": timezone.now()}
    if status != Job.Status.PAUSED:
        fields["finished_at"] = timezone.now()
    if status == Job.Status.SUCCEEDED:
        fields.update(progress=100, result=result)
    # Only this attempt: a run the reaper gave up on must not overwrite the attempt that resumed it.
    updated = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, attempts=job.attempts).update(**fields)
    if not updated:
        logger.warning("job %s changed state while running; keeping that state", job.pk)
    JobLogLine.objects.create(
        job_id=job.pk,
        level="error" if status == Job.Status.FAILED else "info",
        message=f"Job {status}" + (f": {redact(error).splitlines()[-1]}" if error else ""),
    )


def execute(job_id: str) -> str:
    """RQ entry point: claim the row, run its runner, record the outcome."""
    if not connection.in_atomic_block:  # a forked work horse must not reuse its parent's connection
        close_old_connections()
    job = _claim(job_id)
    if job is None:
        return "skipped"
    runner = get_runner(job.kind)(job)
    heartbeat = _Heartbeat(job.pk, job.attempts) if settings.JOB_HEARTBEAT_SECONDS > 0 else None
    if heartbeat:
        heartbeat.start()
    try:
        if job.attempts > 1:
            runner.log(f"Resuming (attempt {job.attempts})")
        result = runner.run()
    except JobSuperseded as exc:  # the row belongs to someone else now (reaper, newer attempt): leave it be
        logger.warning("job %s attempt %s stopped: %s", job.pk, job.attempts, exc)
    except JobCancelled as exc:
        _finish(job, Job.Status.CANCELLED, error=str(exc))
    except JobPaused as exc:
        _finish(job, Job.Status.PAUSED, error=str(exc))
    except JobFailed as exc:
        _finish(job, Job.Status.FAILED, error=str(exc))
    except Exception:  # noqa: BLE001 - any bug ends the job failed with its traceback
        logger.exception("job %s raised", job.pk)
        _finish(job, Job.Status.FAILED, error=traceback.format_exc())
    else:
        _finish(job, Job.Status.SUCCEEDED, result=result)
    finally:
        if heartbeat:
            heartbeat.stop()
        if not connection.in_atomic_block:
            close_old_connections()
    return Job.objects.values_list("status", flat=True).get(pk=job.pk)
