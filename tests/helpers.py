"""Helpers for tests that start real processes (RQ workers, the simulator)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django_rq
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def database_url_for_subprocess() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    auth = f"{user}:{db.get('PASSWORD')}@" if db.get("PASSWORD") else (f"{user}@" if user else "")
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_subprocess(),
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=settings.SECRET_KEY,
        CORRAL_ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        CORRAL_DATA_DIR=str(settings.DATA_DIR),
        CORRAL_JOB_HEARTBEAT_SECONDS="0.5",
        DJANGO_SETTINGS_MODULE="portal.settings",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class WorkerProcess:
    """A real ``manage.py rqworker`` in its own process group, so a test can SIGKILL all of it."""

    def __init__(self, log_path: Path, queues: tuple[str, ...] = settings.JOB_QUEUES):
        self.log_path = log_path
        self.queues = queues
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "rqworker", *self.queues],
            cwd=ROOT, env=subprocess_env(), stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        from rq import Worker

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rqworker exited: {self.log_path.read_text()[-2000:]}")
            mine = [w for w in Worker.all(connection=django_rq.get_connection("default")) if w.pid == self.proc.pid]
            if mine:
                self.name = mine[0].name
                return self
            time.sleep(0.1)
        raise RuntimeError(f"rqworker did not register in 30 s: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the worker and the job process it forked (RQ puts it in its own session), as a crash would."""
        if self.proc and self.proc.poll() is None:
            children = _children(self.proc.pid)
            os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in children:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        conn = django_rq.get_connection("default")
        from rq import Worker

        for w in Worker.all(connection=conn):
            if self.proc and w.pid == self.proc.pid:
                w.register_death()
        self.log.close()


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


