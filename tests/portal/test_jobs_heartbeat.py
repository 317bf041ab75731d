"""The job heartbeat outlives a database error in one beat."""
from __future__ import annotations

import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from portal.jobs import queueing
from portal.jobs.queueing import _Heartbeat
from portal.models import Job
from tests.helpers import wait_for


@pytest.fixture
def running_job(transactional_db, settings):
    settings.JOB_HEARTBEAT_SECONDS = 0.1
    long_ago = timezone.now() - timedelta(minutes=1)
    return Job.objects.create(kind="portal.diagnose", status="running", started_at=long_ago,
                              heartbeat_at=long_ago, attempts=1)


def _beat_of(job: Job):
    return Job.objects.values_list("heartbeat_at", flat=True).get(pk=job.pk)


def test_heartbeat_survives_a_database_error_and_reconnects(running_job):
    real_beat = _Heartbeat.beat
    failures = iter([True, True])

    def flaky(self):
        if next(failures, False):
            raise OperationalError("server closed the connection unexpectedly")
        return real_beat(self)

    closed = []
    real_close = queueing._close_connection

    def spy_close():
        closed.append(1)
        return real_close()

    with mock.patch.object(_Heartbeat, "beat", flaky), mock.patch.object(queueing, "_close_connection", spy_close):
        heartbeat = _Heartbeat(running_job.pk, attempts=1)
        heartbeat.start()
        try:
            before = _beat_of(running_job)
            wait_for(lambda: _beat_of(running_job) > before, timeout=5, message="a heartbeat after the errors")
            assert heartbeat.is_alive()
        finally:
            heartbeat.stop()
    assert heartbeat.failures == 2
    assert len(closed) >= 2  # the broken connection was closed after each failed beat


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_heartbeat_survives_its_connection_being_killed(running_job):
    heartbeat = _Heartbeat(running_job.pk, attempts=1)
    heartbeat.start()
    try:
        before = _beat_of(running_job)
        wait_for(lambda: _beat_of(running_job) > before, timeout=5, message="the first heartbeat")
        with connection.cursor() as cur:  # what a database restart does to the heartbeat's connection
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        killed_at = timezone.now()
        time.sleep(0.3)
        wait_for(lambda: _beat_of(running_job) > killed_at, timeout=5, message="a heartbeat after the kill")
        assert heartbeat.is_alive()
    finally:
        heartbeat.stop()


def test_heartbeat_of_an_old_attempt_does_not_refresh_the_new_one(running_job):
    Job.objects.filter(pk=running_job.pk).update(attempts=2)
    assert _Heartbeat(running_job.pk, attempts=1).beat() == 0
    assert _Heartbeat(running_job.pk, attempts=2).beat() == 1
