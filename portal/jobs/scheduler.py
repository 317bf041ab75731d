"""The scheduler process (``manage.py scheduler portal.cron``): the reaper and periodic enqueues, in-process.

RQ's own ``rqcron`` puts every entry on a queue for a worker to run, so with the only worker
dead the reaper never ran, and a Redis outage killed the scheduler with a ConnectionError. Here
the entries of ``portal.cron`` (``rq.cron.register`` lines, same format) run in this process:
they are quick and need only the database (the reaper) or save a Job row and push it
(``run_periodic``). Redis is used for RQ's scheduler registry and for pushes; when it is
unreachable the loop keeps reaping, retries with a backoff and, once Redis answers again,
pushes at once the jobs that were accepted meanwhile.
"""
from __future__ import annotations

import logging
import signal
import time
from datetime import datetime

from django.db import close_old_connections
from redis.exceptions import RedisError
from rq.cron import CronScheduler
from rq.exceptions import StopRequested
from rq.utils import now

logger = logging.getLogger("corral.scheduler")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


def _fresh_connections() -> None:
    """Drop database connections that broke or aged out; never raise (the database may be down)."""
    try:
        close_old_connections()
    except Exception:  # noqa: BLE001 - the next query reconnects or fails and is logged there
        logger.debug("closing database connections failed", exc_info=True)


class Scheduler(CronScheduler):
    """RQ's cron scheduler, but entries run in-process and a Redis outage is waited out, not fatal."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.redis_ok: bool | None = None  # None: not tried yet
        self.backoff = BACKOFF_FIRST
        self.next_redis_try = 0.0
        self.stopping = False

    def _request_stop(self, signum, frame):
        self.stopping = True
        logger.info("scheduler: stopping (signal %s)", signum)
        raise StopRequested()

    def enqueue_jobs(self) -> list:
        """Run every due entry here, each on its own so one failing entry cannot stop the others."""
        ran = []
        started = now()
        for entry in self._cron_jobs:
            if not entry.should_run():
                continue
            self.run_entry(entry)
            entry.set_enqueue_time(started)
            ran.append(entry)
        return ran

    def run_entry(self, entry) -> None:
        """Call one entry; a database or Redis error is logged and the entry runs again on schedule."""
        _fresh_connections()
        try:
            entry.func(*entry.args, **entry.kwargs)
        except StopRequested:
            raise
        except Exception:  # noqa: BLE001 - the scheduler outlives any one entry's failure
            logger.exception("scheduler: %s failed; it runs again at its next time", entry.name)
        finally:
            _fresh_connections()

    def _redis_housekeeping(self) -> None:
        """Registry and heartbeat in Redis; raises RedisError while Redis is unreachable."""
        if not self.redis_ok:
            self.register_birth()
        else:
            self.save()
        self.heartbeat()

    def check_redis(self) -> None:
        """Keep the Redis side alive; on the way back from an outage push what was accepted meanwhile."""
        if self.redis_ok is False and time.monotonic() < self.next_redis_try:
            return
        try:
            self._redis_housekeeping()
        except RedisError as exc:
            if self.redis_ok is not False:
                logger.warning("scheduler: Redis is unreachable (%s); jobs are still reaped, retrying", exc)
            else:
                logger.info("scheduler: Redis still unreachable (%s); next try in %.0f s", exc, self.backoff)
            self.redis_ok = False
            self.next_redis_try = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, BACKOFF_MAX)
            return
        if self.redis_ok is False:
            logger.warning("scheduler: Redis answers again; pushing the jobs accepted while it was away")
            self.after_reconnect()
        self.redis_ok = True
        self.backoff = BACKOFF_FIRST

    def after_reconnect(self) -> None:
        from portal.jobs.reaper import requeue_unsent

        _fresh_connections()
        try:
            pushed = requeue_unsent()
            logger.warning("scheduler: %d queued jobs pushed after the outage", pushed)
        except Exception:  # noqa: BLE001 - the reaper pushes them on its next pass anyway
            logger.exception("scheduler: pushing queued jobs after the outage failed")
        finally:
            _fresh_connections()

    def sleep_interval(self) -> float:
        """Until the next entry is due, and during an outage no longer than the next Redis try."""
        seconds = self.calculate_sleep_interval()
        if self.redis_ok is False:
            seconds = min(seconds, max(0.0, self.next_redis_try - time.monotonic()))
        return max(seconds, 0.05)

    def start(self) -> None:
        logger.info("scheduler %s: starting with %d entries", self.name, len(self._cron_jobs))
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        try:
            while not self.stopping:
                self.enqueue_jobs()
                self.check_redis()
                time.sleep(self.sleep_interval())
        except (StopRequested, KeyboardInterrupt):
            pass
        finally:
            if self.redis_ok:
                try:
                    self.register_death()
                except RedisError:
                    pass
            logger.info("scheduler %s: stopped", self.name)


def next_times(scheduler: Scheduler) -> dict[str, datetime | None]:
    """When each entry runs next (for logs and tests)."""
    return {entry.name: entry.next_enqueue_time for entry in scheduler.get_jobs()}
