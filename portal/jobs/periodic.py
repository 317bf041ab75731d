"""Periodic work declared once; the job scheduler (``manage.py scheduler portal.cron``) enqueues it."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PeriodicTask:
    kind: str
    every: int | None = None
    cron: str | None = None
    params: dict = field(default_factory=dict)


_tasks: dict[str, PeriodicTask] = {}


def periodic(kind: str, *, every: int | None = None, cron: str | None = None, params: dict | None = None) -> None:
    """Declare that a job kind runs on a schedule (seconds or a cron line). Call from AppConfig.ready()."""
    if bool(every) == bool(cron):
        raise ValueError("give exactly one of every= or cron=")
    _tasks[kind] = PeriodicTask(kind=kind, every=every, cron=cron, params=params or {})


def periodic_tasks() -> list[PeriodicTask]:
    return list(_tasks.values())


def run_periodic(kind: str, params: dict | None = None) -> str:
    """Enqueue one run of a periodic job unless the previous one is still queued or running."""
    from portal.jobs.queueing import enqueue
    from portal.models import Job

    if Job.objects.filter(kind=kind, status__in=Job.ACTIVE, created_by__isnull=True).exists():
        return "previous run still active"
    return str(enqueue(kind, params=params or {}).pk)
