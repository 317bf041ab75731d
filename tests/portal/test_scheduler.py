"""The scheduler process: it reaps lost jobs with no worker alive, and rides out a Redis outage.

These start real processes: ``manage.py scheduler portal.cron``, ``manage.py rqworker`` and, for
the outage, a private ``redis-server`` on a free port (the shared Redis is never stopped).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import override_settings

from portal import jobs
from portal.models import Job
from tests.helpers import ROOT, subprocess_env, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A throwaway redis-server on a free loopback port that a test may stop and start again."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_for(lambda: self._answers(client), timeout=10, message=f"redis-server on port {self.port}")
        return self

    @staticmethod
    def _answers(client) -> bool:
        try:
            return client.ping()
        except Exception:  # noqa: BLE001
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # as a crash would: nothing saved
            self.proc.wait(10)


def queues_at(url: str) -> dict:
    from django.conf import settings

    return {name: {"URL": url, "DEFAULT_TIMEOUT": 3600} for name in settings.JOB_QUEUES}


class Proc:
    """A manage.py command in its own process group, logging to a file."""

    def __init__(self, log: Path, *args: str, **env: str):
        self.log_path = log
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=subprocess_env(**env),
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        import os
        import signal

        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def _status(job_id) -> str:
    return Job.objects.values_list("status", flat=True).get(pk=job_id)


def test_scheduler_reaps_a_lost_job_with_no_worker_alive(rq_worker, tmp_path):
    """The only worker is SIGKILLed mid-job: the scheduler alone marks the job within the stale window."""
    stale = 2.0
    scheduler = Proc(tmp_path / "scheduler.log", "scheduler", "portal.cron", CORRAL_JOB_STALE_SECONDS=str(stale))
    try:
        job = jobs.enqueue("portal.diagnose", params={"steps": 100, "delay": 0.2})
        wait_for(lambda: Job.objects.get(pk=job.pk).progress >= 2, message="the job to make progress")
        rq_worker.kill()
        killed = time.monotonic()
        last_beat = Job.objects.get(pk=job.pk).heartbeat_at
        wait_for(lambda: _status(job.pk) != "running", timeout=stale + 10, interval=0.05,
                 message="the scheduler to reap the job")
        caught = time.monotonic() - killed
        assert scheduler.alive(), scheduler.text()[-2000:]
    finally:
        scheduler.stop()
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding" in job.error
    # Caught at most one reap interval (stale / 4, at least 0.5 s) after the heartbeat went stale.
    silent_for = (job.heartbeat_at - last_beat).total_seconds()
    print(f"reaper caught the lost job {caught:.1f} s after the kill, heartbeat silent {silent_for:.1f} s")
    assert caught <= stale + 0.5 + 1.5


def test_scheduler_rides_out_a_redis_outage_and_pushes_jobs_accepted_meanwhile(
    transactional_db, private_redis, tmp_path, client
):
    url = private_redis.url
    scheduler = Proc(tmp_path / "scheduler.log", "scheduler", "portal.cron", REDIS_URL=url)
    worker = Proc(tmp_path / "worker.log", "rqworker", "--worker-class", "portal.jobs.worker.Worker",
                  *queues_at(url), REDIS_URL=url)
    try:
        with override_settings(RQ_QUEUES=queues_at(url)):
            before = jobs.enqueue("portal.diagnose", params={"steps": 1, "delay": 0})
            wait_for(lambda: _status(before.pk) == "succeeded", timeout=30, message="a job before the outage")

            private_redis.stop()
            accepted = [jobs.enqueue("portal.diagnose", params={"steps": 2, "delay": 0}) for _ in range(3)]
            for job in accepted:
                job.refresh_from_db()
                assert job.status == "queued" and job.progress_message.startswith("Waiting for the job queue")
            assert client.get("/readyz").status_code == 503
            time.sleep(10)
            assert scheduler.alive(), scheduler.text()[-3000:]
            assert all(_status(job.pk) == "queued" for job in accepted)

            private_redis.start()
            back = time.monotonic()
            wait_for(lambda: all(_status(job.pk) == "succeeded" for job in accepted), timeout=60, interval=0.2,
                     message="the jobs accepted during the outage to run")
            print(f"jobs accepted during the outage ran {time.monotonic() - back:.1f} s after Redis came back")
            assert scheduler.alive(), scheduler.text()[-3000:]
            assert worker.alive(), worker.text()[-3000:]
            assert "Redis answers again" in scheduler.text()
            # The worker reconnected after Redis lost everything: /readyz counts it.
            ready = wait_for(lambda: client.get("/readyz").status_code == 200, timeout=30, interval=0.5,
                             message="/readyz to see the reconnected worker")
            assert ready
    finally:
        scheduler.stop()
        worker.stop()
