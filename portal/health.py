"""``/healthz`` says the process answers; ``/readyz`` says it can do its work."""
from __future__ import annotations

import time

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache


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


def _check_redis_and_workers() -> tuple[dict, dict]:
    import django_rq
    from rq import Worker

    try:
        conn = django_rq.get_connection("default")
        conn.ping()
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": str(exc).strip()[:300]}, {"ok": False, "error": "Redis is unreachable"}
    redis = {"ok": True}
    try:
        workers = Worker.all(connection=conn)
    except Exception as exc:  # noqa: BLE001
        return redis, {"ok": False, "error": str(exc)[:300]}
    now = timezone.now()
    fresh = []
    for worker in workers:
        beat = worker.last_heartbeat
        if beat is not None and timezone.is_naive(beat):
            beat = timezone.make_aware(beat, timezone.utc)
        if beat is not None and (now - beat).total_seconds() <= settings.WORKER_SEEN_SECONDS:
            fresh.append({"name": worker.name, "queues": worker.queue_names(), "last_heartbeat": beat.isoformat()})
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
