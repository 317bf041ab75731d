"""Scheduler configuration: ``manage.py scheduler portal.cron`` loads this module.

Entries run inside the scheduler process (see :mod:`portal.jobs.scheduler`), so they must be
quick: the reaper, and one enqueue per periodic task (the work itself runs as a job).
"""
from django.conf import settings
from rq import cron

from portal.jobs import periodic_tasks, reap_lost_jobs
from portal.jobs.periodic import run_periodic


def reap_interval() -> float:
    """A lost job is caught at most this long after its heartbeat went stale."""
    return max(0.5, min(5.0, settings.JOB_STALE_SECONDS / 4))


cron.register(reap_lost_jobs, "default", interval=reap_interval(), name="portal.reap_lost_jobs")
for task in periodic_tasks():
    cron.register(
        run_periodic,
        "default",
        kwargs={"kind": task.kind, "params": task.params},
        interval=task.every,
        cron=task.cron,
        name=f"periodic {task.kind}",
    )
