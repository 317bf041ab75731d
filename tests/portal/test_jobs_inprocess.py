"""Job framework paths run in-process: resume, periodic runs, the reaper."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal import jobs
from portal.jobs.periodic import run_periodic
from portal.models import Job

pytestmark = pytest.mark.django_db


class ResumableRunner(jobs.JobRunner):
    kind = "tests.resumable"
    resumable = True

    def run(self):
        done = self.job.params.get("done", [])
        return {"attempt": self.job.attempts, "done": done}


jobs.register(ResumableRunner)


def test_lost_resumable_job_is_paused_then_resumes(run_jobs, settings):
    settings.JOB_STALE_SECONDS = 5
    long_ago = timezone.now() - timedelta(minutes=5)
    job = Job.objects.create(kind=ResumableRunner.kind, status="running", started_at=long_ago,
                             heartbeat_at=long_ago, worker="w1", attempts=1)
    assert jobs.reap_lost_jobs()["lost"] == 1
    job.refresh_from_db()
    assert job.status == "paused"
    assert "can be resumed" in job.log_lines.last().message
    jobs.resume(job)
    job.refresh_from_db()
    assert job.status == "queued"
    run_jobs()
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.result["attempt"] == 2


def test_finished_job_cannot_be_cancelled_or_resumed():
    job = Job.objects.create(kind="portal.diagnose", status="succeeded")
    with pytest.raises(jobs.control.JobStateError):
        jobs.cancel(job)
    with pytest.raises(jobs.control.JobStateError):
        jobs.resume(job)


def test_failed_job_that_is_not_resumable_cannot_be_resumed():
    job = Job.objects.create(kind="portal.diagnose", status="failed")
    with pytest.raises(jobs.control.JobStateError, match="cannot be resumed"):
        jobs.resume(job)


def test_periodic_run_does_not_pile_up(run_jobs):
    first = run_periodic("portal.prune_jobs")
    assert run_periodic("portal.prune_jobs") == "previous run still active"
    run_jobs()
    assert Job.objects.get(pk=first).status == "succeeded"
    assert run_periodic("portal.prune_jobs") != "previous run still active"


def test_prune_keeps_recent_and_active_jobs(run_jobs):
    old = timezone.now() - timedelta(days=90)
    Job.objects.create(kind="portal.diagnose", status="succeeded", finished_at=old)
    keep = Job.objects.create(kind="portal.diagnose", status="succeeded", finished_at=timezone.now())
    jobs.enqueue("portal.prune_jobs")
    ran = run_jobs()
    assert ran[0].result == {"deleted": 1}
    assert Job.objects.filter(pk=keep.pk).exists()


def test_cron_config_declares_the_reaper_and_periodic_jobs():
    import importlib

    from rq import cron

    import portal.cron

    cron._job_data_registry.clear()
    importlib.reload(portal.cron)
    names = {entry["name"] for entry in cron._job_data_registry}
    assert "portal.reap_lost_jobs" in names
    assert "periodic portal.prune_jobs" in names


def test_unknown_kind_is_refused():
    with pytest.raises(LookupError, match="no job runner"):
        jobs.enqueue("nope.nothing")
    assert Job.objects.count() == 0
