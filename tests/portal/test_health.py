"""/healthz and /readyz."""
from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def _queues_at(url: str) -> dict:
    return {name: {"URL": url, "DEFAULT_TIMEOUT": 60} for name in ("default", "clusters", "scans", "backups", "catalog")}


def test_readyz_is_503_when_redis_is_down(client):
    import django_rq.queues

    with override_settings(RQ_QUEUES=_queues_at("redis://127.0.0.1:1/0")):
        django_rq.queues.get_redis_connection.cache_clear() if hasattr(
            django_rq.queues.get_redis_connection, "cache_clear") else None
        response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "not ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"]


@pytest.mark.slow
def test_readyz_is_200_with_database_redis_and_a_live_worker(client, rq_worker):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["workers"]["count"] >= 1
    assert any(w["name"] == rq_worker.name for w in body["checks"]["workers"]["workers"])


def test_readyz_is_503_without_a_worker(client, clean_queues):
    import django_rq
    from rq import Worker

    conn = django_rq.get_connection("default")
    for worker in Worker.all(connection=conn):
        worker.register_death()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "no worker seen" in response.json()["checks"]["workers"]["error"]


@pytest.mark.slow
def test_readyz_is_503_when_the_only_worker_died_though_redis_still_lists_it(client, rq_worker):
    import django_rq
    from rq import Worker

    assert client.get("/readyz").status_code == 200
    rq_worker.kill()  # SIGKILL: no death is registered, the worker stays listed
    conn = django_rq.get_connection("default")
    assert rq_worker.name in [w.name for w in Worker.all(connection=conn)]
    with override_settings(WORKER_SEEN_SECONDS=1):
        import time

        time.sleep(1.5)
        response = client.get("/readyz")
    assert response.status_code == 503
    assert "no worker seen" in response.json()["checks"]["workers"]["error"]


def test_readyz_counts_a_worker_that_reconnected_after_redis_lost_its_registry(client, clean_queues):
    """After a Redis restart a worker's heartbeat comes back before (or without) its registration."""
    import django_rq
    from rq import Worker
    from rq.utils import now, utcformat

    conn = django_rq.get_connection("default")
    for worker in Worker.all(connection=conn):
        worker.register_death()
    key = "rq:worker:reconnected-test-worker"
    conn.hset(key, "last_heartbeat", utcformat(now()))
    conn.expire(key, 60)
    try:
        assert Worker.all(connection=conn) == []  # RQ's own list does not know it
        response = client.get("/readyz")
        assert response.status_code == 200, response.json()
        assert [w["name"] for w in response.json()["checks"]["workers"]["workers"]] == ["reconnected-test-worker"]
    finally:
        conn.delete(key)
