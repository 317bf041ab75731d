"""The job framework end to end, on a real rqworker process."""
from __future__ import annotations

import pytest
from django.test import override_settings

from portal.jobs import reap_lost_jobs
from portal.models import Job
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def _job(job_id) -> Job:
    return Job.objects.get(pk=job_id)


def test_job_enqueued_through_api_runs_on_worker_and_succeeds(rq_worker, admin_api):
    response = admin_api.post("/v3/jobs/diagnose/", {"steps": 3, "delay": 0.05}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert response.json()["status"] == "queued"

    wait_for(lambda: _job(job_id).is_finished, message="the job to finish")
    detail = admin_api.get(f"/v3/jobs/{job_id}/").json()
    assert detail["status"] == "succeeded", detail
    assert detail["progress"] == 100
    assert detail["result"]["steps"] == 3
    assert detail["worker"].startswith(rq_worker.name)
    messages = [line["message"] for line in detail["log"]]
    assert messages[:3] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert messages[-1] == "Job succeeded"


def test_job_that_raises_ends_failed_with_the_error(rq_worker, admin_api):
    response = admin_api.post("/v3/jobs/diagnose/", {"steps": 3, "delay": 0, "crash_at": 2}, format="json")
    job_id = response.json()["id"]
    wait_for(lambda: _job(job_id).is_finished, message="the job to finish")
    job = _job(job_id)
    assert job.status == Job.Status.FAILED
    assert "RuntimeError: diagnostic crash at step 2" in job.error
    assert "Traceback" in job.error
    assert job.log_lines.last().level == "error"


def test_domain_failure_is_failed_without_traceback(rq_worker, admin_api):
    job_id = admin_api.post("/v3/jobs/diagnose/", {"steps": 2, "delay": 0, "fail_at": 1}, format="json").json()["id"]
    wait_for(lambda: _job(job_id).is_finished, message="the job to finish")
    job = _job(job_id)
    assert job.status == Job.Status.FAILED
    assert job.error == "failed at step 1 as requested"


def test_killed_worker_leaves_job_failed_not_running(rq_worker, admin_api):
    job_id = admin_api.post("/v3/jobs/diagnose/", {"steps": 100, "delay": 0.2}, format="json").json()["id"]
    wait_for(lambda: _job(job_id).progress >= 2, message="the job to make progress")
    rq_worker.kill()
    assert _job(job_id).status == Job.Status.RUNNING  # nobody has noticed yet

    with override_settings(JOB_STALE_SECONDS=1.5):
        wait_for(lambda: reap_lost_jobs()["lost"] == 1, timeout=10, interval=0.5, message="the reaper")
    job = _job(job_id)
    assert job.status == Job.Status.FAILED
    assert "stopped responding" in job.error
    assert job.finished_at is not None
    assert job.progress < 100


def test_cancelled_queued_job_never_runs(transactional_db, clean_queues, admin_api, tmp_path):
    from tests.helpers import WorkerProcess

    job_id = admin_api.post("/v3/jobs/diagnose/", {"steps": 1, "delay": 0}, format="json").json()["id"]
    response = admin_api.post(f"/v3/jobs/{job_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"

    # A second job queued after it proves the worker drained the queue past the cancelled one.
    later = admin_api.post("/v3/jobs/diagnose/", {"steps": 1, "delay": 0}, format="json").json()["id"]
    worker = WorkerProcess(tmp_path / "w.log").start()
    try:
        wait_for(lambda: _job(later).is_finished, message="the later job")
    finally:
        worker.stop()
    job = _job(job_id)
    assert job.status == Job.Status.CANCELLED
    assert job.started_at is None and job.attempts == 0
    assert not job.log_lines.filter(message__startswith="step").exists()


def test_running_job_cancelled_stops_at_next_step(rq_worker, admin_api):
    job_id = admin_api.post("/v3/jobs/diagnose/", {"steps": 100, "delay": 0.1}, format="json").json()["id"]
    wait_for(lambda: _job(job_id).progress >= 2, message="the job to start")
    assert admin_api.post(f"/v3/jobs/{job_id}/cancel/").json()["cancel_requested"] is True
    wait_for(lambda: _job(job_id).is_finished, message="the job to stop")
    job = _job(job_id)
    assert job.status == Job.Status.CANCELLED
    assert job.progress < 100
