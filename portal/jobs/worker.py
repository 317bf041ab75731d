"""The RQ worker class Corral runs (``rqworker --worker-class portal.jobs.worker.Worker``).

Two changes to RQ's worker, both so ``/readyz`` can tell the truth about workers:

* it heartbeats every few seconds, idle or busy (RQ's default is every 405 s when idle), so a
  dead worker's heartbeat expires quickly;
* after a Redis restart that lost its data it registers itself again at its next heartbeat,
  so a worker that reconnected is listed again, with its queues.

And it outlives a Redis outage that starts while it runs a job or does maintenance (RQ's
worker quits then): it waits for Redis with a backoff and goes on. The job's outcome is in
its Job row already; Corral never reads RQ's copy of it.
"""
from __future__ import annotations

import logging
import time

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker as RQWorker
from rq import worker_registration

logger = logging.getLogger("corral.jobs")

REDIS_LOST = (RedisConnectionError, RedisTimeoutError)
WORKER_TTL = 35  # idle: a heartbeat every WORKER_TTL - 15 s (the blocking dequeue's timeout)
JOB_MONITORING_INTERVAL = 10  # busy: a heartbeat this often


def preload() -> None:
    """Load what every job's forked child would otherwise load again: the Kubernetes client's API classes
    and models (0.6-1.2 s per job, most of a short job such as a snapshot) and the job runners' modules."""
    from kubernetes import client

    for name in ("CoreV1Api", "CustomObjectsApi", "BatchV1Api", "VersionApi", "AppsV1Api"):
        getattr(client, name)
    try:
        import backups.restore  # noqa: F401
        import backups.snapshots  # noqa: F401
        import clusters.upgrades.engine  # noqa: F401
    except Exception:  # noqa: BLE001 - a preload is an optimisation; the job imports what it needs itself
        logger.debug("preloading job modules failed", exc_info=True)


class Worker(RQWorker):
    """RQ's worker with frequent heartbeats and re-registration after Redis lost its data."""

    def __init__(self, *args, **kwargs):
        preload()
        if not kwargs.get("worker_ttl"):
            kwargs["worker_ttl"] = WORKER_TTL
        if not kwargs.get("job_monitoring_interval") or kwargs["job_monitoring_interval"] == 30:
            kwargs["job_monitoring_interval"] = JOB_MONITORING_INTERVAL
        super().__init__(*args, **kwargs)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout, pipeline)
        except REDIS_LOST as exc:  # the next Redis command (the dequeue) waits for it with a backoff
            logger.debug("worker %s: heartbeat lost: %s", self.name, exc)
            return
        if self.birth_date is None:
            return
        try:
            if self.connection.sismember(worker_registration.REDIS_WORKER_KEYS, self.key):
                return
            with self.connection.pipeline() as pipe:
                pipe.hset(self.key, mapping=self.serialize())
                pipe.expire(self.key, timeout or self.worker_ttl + 60)
                worker_registration.register(self, pipe)
                pipe.execute()
            logger.warning("worker %s: registered again (Redis had lost its registration)", self.name)
        except RedisError as exc:  # the dequeue loop's own retry handles the outage
            logger.debug("worker %s: could not re-register: %s", self.name, exc)

    def _wait_for_redis(self, exc: Exception, doing: str) -> None:
        logger.warning("worker %s: Redis was lost while %s (%s); waiting for it", self.name, doing, exc)
        wait = 1.0
        while not self._stop_requested:
            time.sleep(wait)
            try:
                self.connection.ping()
            except REDIS_LOST:
                wait = min(wait * 2, 30.0)
                continue
            logger.warning("worker %s: Redis answers again", self.name)
            return

    def execute_job(self, job, queue) -> None:
        try:
            super().execute_job(job, queue)
        except REDIS_LOST as exc:
            self._wait_for_redis(exc, f"running job {job.id}")

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_LOST as exc:
            self._wait_for_redis(exc, "checking for suspension")

    def run_maintenance_tasks(self) -> None:
        try:
            super().run_maintenance_tasks()
        except REDIS_LOST as exc:
            self._wait_for_redis(exc, "cleaning registries")
