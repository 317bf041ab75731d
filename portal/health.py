"""``/healthz`` says the process answers; ``/readyz`` says it can do its work."""
from __future__ import annotations

import time
from datetime import UTC

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from rq.utils import utcparse


@never_cache
def healthz(request) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> dict:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc).strip()[:300]}
    return {"ok": True, "vendor": connection.vendor}


WORKER_KEY_PREFIX = "rq:worker:"


def live_workers(conn) -> list[dict]:
    """Workers whose RQ heartbeat is fresh, read from Redis now (no cache).

    Looks at every worker hash in Redis, not only RQ's registry set: a worker that reconnected
    after Redis lost its data writes its heartbeat again before (or without) registering again.
    A worker still listed but silent for WORKER_SEEN_SECONDS is dead, whatever the list says.
    """
    keys = {k.decode() if isinstance(k, bytes) else k for k in conn.smembers("rq:workers")}
    keys.update(k.decode() for k in conn.scan_iter(match=f"{WORKER_KEY_PREFIX}*", count=1000))
    keys = sorted(k for k in keys if ":" not in k[len(WORKER_KEY_PREFIX):])  # not rq:worker:<name>:executions
    if not keys:
        return []
    with conn.pipeline() as pipe:
        for key in keys:
            pipe.hmget(key, "last_heartbeat", "queues", "pid", "hostname", "death")
        rows = pipe.execute(raise_on_error=False)
    now = timezone.now()
    fresh = []
    for key, row in zip(keys, rows, strict=True):
        if isinstance(row, Exception) or not row or not row[0] or row[4]:
            continue
        beat_text, queues, pid, host = (v.decode() if v else "" for v in row[:4])
        try:
            beat = utcparse(beat_text)
        except ValueError:
            continue
        if timezone.is_naive(beat):
            beat = beat.replace(tzinfo=UTC)
        age = (now - beat).total_seconds()
        if age <= settings.WORKER_SEEN_SECONDS:
            fresh.append({"name": key[len(WORKER_KEY_PREFIX):], "queues": [q for q in queues.split(",") if q],
                          "pid": int(pid) if pid.isdigit() else None, "hostname": host,
                          "last_heartbeat": beat.isoformat(), "age_seconds": round(age, 1)})
    return fresh


def _check_redis_and_workers() -> tuple[dict, dict]:
    import django_rq

    try:
        conn = django_rq.get_connection("default")
        conn.ping()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc).strip()[:300]}, {"ok": False, "error": "Redis is unreachable"}
    redis = {"ok": True}
    try:
        fresh = live_workers(conn)
    except Exception as exc:  # noqa: BLE001
        return redis, {"ok": False, "error": str(exc)[:300]}
    if not fresh:
        return redis, {"ok": False, "error": f"no worker seen in the last {int(settings.WORKER_SEEN_SECONDS)} s"}
    return redis, {"ok": True, "count": len(fresh), "workers": fresh}


@never_cache
def readyz(request) -> JsonResponse:
    started = time.monotonic()
    database = _check_database()
    redis, workers = _check_redis_and_workers()
    checks = {"database": database, "redis": redis, "workers": workers}
    ready = all(c["ok"] for c in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}
    return JsonResponse(body, status=200 if ready else 503)
