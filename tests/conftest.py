"""Shared fixtures: users, API clients, a real RQ worker process, and in-process job running."""
from __future__ import annotations

import os

import django_rq
import pytest
from rest_framework.test import APIClient

from tests.helpers import WorkerProcess

# The automatic snapshots (before each upgrade, after each import) are tested in tests/backups, which turn
# them on; elsewhere they would add a snapshot job to every import and upgrade. Worker processes inherit this.
os.environ.setdefault("CORRAL_SNAPSHOT_BEFORE_UPGRADE", "0")
os.environ.setdefault("CORRAL_SNAPSHOT_AFTER_IMPORT", "0")


@pytest.fixture(autouse=True)
def _automatic_snapshots_off(settings):
    settings.SNAPSHOT_BEFORE_UPGRADE = os.environ["CORRAL_SNAPSHOT_BEFORE_UPGRADE"] not in ("0", "false", "")
    settings.SNAPSHOT_AFTER_IMPORT = os.environ["CORRAL_SNAPSHOT_AFTER_IMPORT"] not in ("0", "false", "")


@pytest.fixture
def clean_queues():
    """Empty the job queues; the test command points REDIS_URL at a Redis database of its own."""
    conn = django_rq.get_connection("default")
    for key in conn.scan_iter("rq:*"):
        if not key.startswith(b"rq:worker") and not key.startswith(b"rq:workers"):
            conn.delete(key)
    yield


@pytest.fixture
def rq_worker(transactional_db, clean_queues, tmp_path):
    worker = WorkerProcess(tmp_path / "rqworker.log").start()
    yield worker
    worker.stop()


@pytest.fixture
def run_jobs(settings):
    """Run every queued job in this process, as a worker would (fast path for most tests)."""
    settings.JOB_HEARTBEAT_SECONDS = 0  # the test's open transaction would block a heartbeat thread
    from portal.jobs import execute
    from portal.models import Job

    def run() -> list[Job]:
        ran = []
        while True:
            queued = list(Job.objects.filter(status=Job.Status.QUEUED).order_by("created_at"))
            if not queued:
                return ran
            for job in queued:
                execute(str(job.pk))
                job.refresh_from_db()
                ran.append(job)

    return run


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")


@pytest.fixture
def make_user(django_user_model):
    def make(username: str, **kwargs):
        return django_user_model.objects.create_user(username, f"{username}@example.com", "pw-123456", **kwargs)

    return make


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def admin_api(admin_user):
    client = APIClient()
    client.force_login(admin_user)
    return client


SMALL_FLEET = {
    "defaults": {"timings": {"pod_start": 0.2, "upgrade_down": 0.5, "heartbeat": 1, "node_grace": 4}},
    "clusters": [
        {"name": "rke-a", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2}},
        {"name": "k3s-a", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 2}},
        {"name": "imp-a", "kind": "imported", "version": "v1.18.6", "nodes": {"controlplane": 1, "worker": 1}},
    ],
}


@pytest.fixture
def fleet():
    """A small simulated fleet: one rke, one k3s and one imported cluster."""
    from kubesim import start_fleet

    sim = start_fleet(SMALL_FLEET, time_scale=0.2)
    yield sim
    sim.stop()
