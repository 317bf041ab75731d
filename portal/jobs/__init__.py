"""The one job framework: every long operation is a Job row run by a JobRunner on an RQ worker.

Apps declare runners (``class UpgradeRunner(JobRunner)``) and register them in their
``AppConfig.ready()``; admin actions and API views call :func:`enqueue` (through a
service function), never RQ directly.
"""
from portal.jobs.control import cancel, resume
from portal.jobs.periodic import periodic, periodic_tasks
from portal.jobs.queueing import enqueue, execute, push
from portal.jobs.reaper import reap_lost_jobs
from portal.jobs.runner import (
    JobCancelled,
    JobFailed,
    JobPaused,
    JobRunner,
    NullReporter,
    Reporter,
    get_runner,
    register,
    registered_kinds,
    request_cancel,
    request_resume,
)

__all__ = [
    "JobCancelled",
    "JobFailed",
    "JobPaused",
    "JobRunner",
    "NullReporter",
    "Reporter",
    "cancel",
    "enqueue",
    "execute",
    "get_runner",
    "periodic",
    "periodic_tasks",
    "push",
    "reap_lost_jobs",
    "register",
    "registered_kinds",
    "request_cancel",
    "request_resume",
    "resume",
]
