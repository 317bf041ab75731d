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


def test_cron_config_declares_the_reaper_and_periodic_jobs(settings):
    import importlib

    from rq import cron

    import portal.cron

    settings.JOB_STALE_SECONDS = 30
    cron._job_data_registry.clear()
    importlib.reload(portal.cron)
    entries = {entry["name"]: entry for entry in cron._job_data_registry}
    cron._job_data_registry.clear()
    assert "periodic portal.prune_jobs" in entries
    # Reaped often enough that a lost job is caught well within the stale window.
    assert entries["portal.reap_lost_jobs"]["interval"] <= 5


def test_scheduler_runs_its_entries_in_process_and_survives_a_failing_one(monkeypatch):
    """The reaper must run where no worker is needed: in the scheduler process, not on a queue."""
    from unittest import mock

    import django_rq

    from portal.jobs.scheduler import Scheduler

    calls = []
    scheduler = Scheduler(connection=django_rq.get_connection("default"))
    scheduler.register(mock.Mock(side_effect=RuntimeError("boom"), __name__="broken", __module__="t"),
                       "default", interval=60, name="broken")
    scheduler.register(mock.Mock(side_effect=lambda: calls.append(1), __name__="fine", __module__="t"),
                       "default", interval=60, name="fine")
    queued_before = django_rq.get_queue("default").count
    ran = scheduler.enqueue_jobs()
    assert [entry.name for entry in ran] == ["broken", "fine"]
    assert calls == [1]
    assert django_rq.get_queue("default").count == queued_before  # nothing went through RQ
    assert scheduler.enqueue_jobs() == []  # not due again for a minute


def _running(kind: str, seconds_ago: float) -> Job:
    beat = timezone.now() - timedelta(seconds=seconds_ago)
    return Job.objects.create(kind=kind, status="running", started_at=beat, heartbeat_at=beat, worker="w1",
                              attempts=1)


def test_resume_is_offered_and_allowed_as_soon_as_the_heartbeat_is_stale(admin_api, settings):
    settings.JOB_STALE_SECONDS = 30
    fresh = _running(ResumableRunner.kind, seconds_ago=5)
    view = admin_api.get(f"/v3/jobs/{fresh.pk}/").json()
    assert view["capabilities"]["resume"] is False
    assert admin_api.post(f"/v3/jobs/{fresh.pk}/resume/").status_code == 409

    stale = _running(ResumableRunner.kind, seconds_ago=31)  # the reaper has not run yet
    view = admin_api.get(f"/v3/jobs/{stale.pk}/").json()
    assert view["status"] == "running" and view["capabilities"]["resume"] is True
    response = admin_api.post(f"/v3/jobs/{stale.pk}/resume/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "queued"
    stale.refresh_from_db()
    assert stale.status == "queued"
    messages = list(stale.log_lines.values_list("message", flat=True))
    assert any("stopped responding" in m for m in messages) and messages[-1] == "Resume requested by root"


def test_a_stale_job_that_cannot_resume_is_not_offered_resume(admin_api, settings):
    settings.JOB_STALE_SECONDS = 30
    stale = _running("portal.diagnose", seconds_ago=60)
    assert admin_api.get(f"/v3/jobs/{stale.pk}/").json()["capabilities"] == {
        "view": True, "cancel": True, "resume": False}
    assert admin_api.post(f"/v3/jobs/{stale.pk}/resume/").status_code == 409
    done = Job.objects.create(kind="portal.diagnose", status="succeeded")
    assert admin_api.get(f"/v3/jobs/{done.pk}/").json()["capabilities"]["cancel"] is False


def test_a_run_the_reaper_gave_up_on_does_not_overwrite_the_next_attempt(run_jobs):
    from portal.jobs.queueing import _finish

    job = _running(ResumableRunner.kind, seconds_ago=0)
    old_run = Job.objects.get(pk=job.pk)
    Job.objects.filter(pk=job.pk).update(attempts=2)  # resumed and claimed again meanwhile
    _finish(old_run, Job.Status.FAILED, error="the old run ends late")
    job.refresh_from_db()
    assert job.status == "running" and job.error == ""


def test_reaper_pushes_queued_jobs_rq_never_received(transactional_db, clean_queues):
    """(transactional: django-rq pushes on commit)"""
    import django_rq

    job = Job.objects.create(kind="portal.diagnose", status="queued",
                             created_at=timezone.now() - timedelta(seconds=10),
                             progress_message="Waiting for the job queue: Connection refused")
    assert jobs.reap_lost_jobs()["requeued"] == 1
    assert django_rq.get_queue("default").job_ids == [f"{job.pk.hex}-0"]
    job.refresh_from_db()
    assert job.progress_message == ""
    assert jobs.reap_lost_jobs()["requeued"] == 0  # already on the queue: not pushed twice


def test_unknown_kind_is_refused():
    with pytest.raises(LookupError, match="no job runner"):
        jobs.enqueue("nope.nothing")
    assert Job.objects.count() == 0
