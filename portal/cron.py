"""Scheduler configuration: ``manage.py rqcron portal.cron`` loads this module."""
from rq import cron

from portal.jobs import periodic_tasks, reap_lost_jobs
from portal.jobs.periodic import run_periodic

cron.register(reap_lost_jobs, "default", interval=15, name="portal.reap_lost_jobs")
for task in periodic_tasks():
    cron.register(
        run_periodic,
        "default",
        kwargs={"kind": task.kind, "params": task.params},
        interval=task.every,
        cron=task.cron,
        name=f"periodic {task.kind}",
    )
