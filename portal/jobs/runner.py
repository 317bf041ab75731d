"""JobRunner: what a long operation subclasses, and the registry of kinds."""
from __future__ import annotations

import logging
from typing import Any, ClassVar, Protocol

from django.utils import timezone

from portal.crypto import redact
from portal.models import Job, JobLogLine

logger = logging.getLogger("corral.jobs")


class JobFailed(Exception):
    """A failure the operator should read (unreachable cluster, bad snapshot): no traceback."""


class JobPaused(Exception):
    """The job stopped safely and can be resumed (e.g. a node did not come back in time)."""


class JobCancelled(Exception):
    """Raised at a checkpoint after someone asked to cancel the job."""


class JobSuperseded(JobPaused):
    """Raised at a checkpoint when the job row is no longer this run's: no longer running (the reaper
    paused it, someone cancelled it outright) or claimed again by another attempt. The run must stop
    at once without touching anything; whoever owns the row now decides what happens."""


class Reporter(Protocol):
    """What service functions get so they can report progress whether or not a job runs them."""

    def log(self, message: str, level: str = "info") -> None: ...

    def progress(self, percent: int, message: str = "") -> None: ...

    def checkpoint(self) -> None: ...


class NullReporter:
    """A Reporter for synchronous calls: logs go to the process log only."""

    def log(self, message: str, level: str = "info") -> None:
        logger.log(logging.getLevelName(level.upper()), redact(message))

    def progress(self, percent: int, message: str = "") -> None:
        pass

    def checkpoint(self) -> None:
        pass


class JobRunner:
    """Base class for long operations. Subclasses set ``kind`` and ``queue`` and write ``run()``.

    ``run()`` returns a JSON-able result. Raise :class:`JobFailed` for an expected failure
    and :class:`JobPaused` to stop in a resumable state; anything else fails the job with
    its traceback. ``resumable`` runners are paused, not failed, when their worker dies,
    and must pick up from stored state when run again.
    """

    kind: ClassVar[str]
    queue: ClassVar[str] = "default"
    timeout: ClassVar[int] = 3600
    resumable: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, job: Job):
        self.job = job

    @property
    def params(self) -> dict[str, Any]:
        return self.job.params or {}

    @property
    def target(self):
        return self.job.target

    def run(self) -> Any:
        raise NotImplementedError

    # Operators cancel and resume jobs from the generic job pages; a runner whose job stands for a
    # domain object (an upgrade) overrides these so that object follows, whichever page was used.
    @classmethod
    def request_cancel(cls, job: Job, user=None) -> Job:
        from portal.jobs.control import cancel

        return cancel(job, user=user)

    @classmethod
    def request_resume(cls, job: Job, user=None) -> Job:
        from portal.jobs.control import resume

        return resume(job, user=user)

    @classmethod
    def on_lost(cls, job: Job, reason: str) -> None:
        """Called by the reaper after it paused or failed a job whose worker died."""

    def log(self, message: str, level: str = "info") -> None:
        message = redact(str(message))
        JobLogLine.objects.create(job_id=self.job.pk, level=level, message=message, at=timezone.now())
        logger.log(logging.getLevelName(level.upper()), "[%s %s] %s", self.job.kind, self.job.pk, message)

    def progress(self, percent: int, message: str = "") -> None:
        percent = max(0, min(100, int(percent)))
        self.job.progress, self.job.progress_message = percent, message[:255]
        Job.objects.filter(pk=self.job.pk).update(progress=percent, progress_message=message[:255])
        self.checkpoint()

    def checkpoint(self) -> None:
        """Stop if cancellation was asked for, or if this run no longer owns its job row."""
        row = Job.objects.filter(pk=self.job.pk).values("status", "attempts", "cancel_requested").first()
        if row is None:
            raise JobSuperseded("the job row was deleted")
        if self.job.status == Job.Status.RUNNING and (
                row["status"] != Job.Status.RUNNING or row["attempts"] != self.job.attempts):
            raise JobSuperseded(f"the job is now {row['status']} (attempt {row['attempts']}); this run "
                                f"(attempt {self.job.attempts}) no longer owns it")
        if row["cancel_requested"]:
            raise JobCancelled("cancelled on request")


_runners: dict[str, type[JobRunner]] = {}


def register(*runners: type[JobRunner]) -> None:
    """Called from AppConfig.ready(); registering the same class twice is harmless."""
    for runner in runners:
        existing = _runners.get(runner.kind)
        if existing is not None and existing is not runner:
            raise ValueError(f"job kind {runner.kind!r} is registered twice")
        _runners[runner.kind] = runner


def get_runner(kind: str) -> type[JobRunner]:
    try:
        return _runners[kind]
    except KeyError:
        raise LookupError(f"no job runner is registered for kind {kind!r}") from None


def registered_kinds() -> list[str]:
    return sorted(_runners)


def request_cancel(job: Job, user=None) -> Job:
    """Cancel a job the way its runner wants (the entry point for job pages in admin and API)."""
    from rbac import access

    access.require(user, "cancel", job)
    return get_runner(job.kind).request_cancel(job, user=user)


def request_resume(job: Job, user=None) -> Job:
    from rbac import access

    access.require(user, "resume", job)
    return get_runner(job.kind).request_resume(job, user=user)
