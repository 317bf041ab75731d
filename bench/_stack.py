"""A Corral stack of its own for benchmarks: database, Redis database, web server, RQ workers, simulator.

    with Stack() as stack:                      # migrates, creates an admin and an API token
        api = stack.api                         # HTTP client for /v3/ with the token
        sim = SimProcess(fleet, stack.work)     # python -m kubesim serve, in a process of its own
        ...

Everything runs as it does under ``bin/up``, on loopback only: gunicorn serves the portal on a free
port, two ``manage.py rqworker --worker-class portal.jobs.worker.Worker`` processes take the
``clusters`` queue and the other queues. The database is ``$DATABASE_URL`` if set (kept), else a
fresh ``corral_bench`` database on the local PostgreSQL when one answers (dropped at the end),
else a temporary SQLite file. Redis database 4 (``BENCH_REDIS_URL``) is flushed at start and end.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
WORKER = [PY, "manage.py", "rqworker", "--worker-class", "portal.jobs.worker.Worker"]
WORKER_QUEUES = (("clusters",), ("default", "scans", "backups", "catalog"))  # as bin/up runs them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_time(text: str | None) -> float | None:
    """An API timestamp (ISO 8601) as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def _stop_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


class Database:
    """The benchmark's own database: a URL, and whether it is ours to drop."""

    def __init__(self, work: Path, name: str = "corral_bench"):
        self.name = name
        self.dropped_by_us = False
        if os.environ.get("DATABASE_URL"):
            self.url, self.what = os.environ["DATABASE_URL"], "DATABASE_URL from the environment (kept)"
        elif self._postgres("DROP DATABASE IF EXISTS {n} WITH (FORCE)", "CREATE DATABASE {n}"):
            self.url, self.what = f"{PG_SERVER}/{name}", f"PostgreSQL 127.0.0.1:5432/{name} (fresh, dropped at the end)"
            self.dropped_by_us = True
        else:
            self.url = f"sqlite:///{work / 'bench.sqlite3'}"
            self.what = f"SQLite {work / 'bench.sqlite3'} (temporary)"

    def _postgres(self, *statements: str) -> bool:
        try:
            import psycopg
            from psycopg import sql

            with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=2) as conn:
                for statement in statements:
                    conn.execute(sql.SQL(statement).format(n=sql.Identifier(self.name)))
            return True
        except Exception:  # noqa: BLE001 - no PostgreSQL here: SQLite instead
            return False

    def drop(self) -> None:
        if self.dropped_by_us:
            self._postgres("DROP DATABASE IF EXISTS {n} WITH (FORCE)")


class Api:
    """``/v3/`` over real HTTP with a bearer token; counts its own requests."""

    def __init__(self, base: str, token: str):
        self.base, self.token, self.requests = base.rstrip("/"), token, 0

    def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,)) -> Any:
        url = path if path.startswith("http") else f"{self.base}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        if status not in expect:
            raise SystemExit(f"{method} {path}: HTTP {status}: {text[:2000]}")
        return json.loads(text) if text else None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def pages(self, path: str) -> list[Any]:
        out, url = [], path
        while url:
            page = self.get(url)
            out.extend(page["results"])
            url = page.get("next")
        return out


class Stack:
    """Database, Redis db, migrations, admin + token, gunicorn and two RQ workers; ``close()`` undoes it all."""

    def __init__(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.db: Database | None = None
        self.api: Api | None = None
        self.redis = None

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(DATABASE_URL=self.db.url, REDIS_URL=REDIS_URL, CORRAL_DATA_DIR=str(self.work / "data"),
                   DJANGO_SETTINGS_MODULE="portal.settings", CORRAL_ENV="development", DJANGO_DEBUG="0",
                   PYTHONUNBUFFERED="1")
        return env

    def start(self) -> None:
        import redis

        self.db = Database(self.work)
        self.redis = redis.Redis.from_url(REDIS_URL)
        self.redis.flushdb()
        os.environ.update(self.env())
        sys.path.insert(0, str(ROOT))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from django.contrib.auth import get_user_model

        from portal.models import ApiToken

        admin = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123456")
        _, token = ApiToken.issue(admin, "benchmark")
        from django.db import connections

        connections.close_all()
        for queues in WORKER_QUEUES:
            self._spawn(f"rqworker-{'-'.join(queues)}", [*WORKER, *queues])
        port = free_port()
        self._spawn("gunicorn", [str(Path(PY).parent / "gunicorn"), "portal.wsgi:application", "--bind",
                                 f"127.0.0.1:{port}", "--workers", "2", "--graceful-timeout", "5"])
        self.api = Api(f"http://127.0.0.1:{port}/v3", token)
        self._wait_ready(port)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.work / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process's life
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs.append((name, proc))

    def _wait_ready(self, port: int) -> None:
        """gunicorn answers /healthz and both workers registered with RQ."""
        from rq import Worker

        deadline = time.monotonic() + 60
        pids = {p.pid for n, p in self.procs if n.startswith("rqworker")}
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise SystemExit(f"{name} exited: {self.log_tail(name)}")
            registered = {w.pid for w in Worker.all(connection=self.redis)}
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    web = resp.status == 200
            except OSError:
                web = False
            if web and pids <= registered:
                return
            time.sleep(0.2)
        raise SystemExit("the web server or the workers did not come up in 60 s")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.work / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def close(self) -> None:
        for _, proc in reversed(self.procs):
            _stop_group(proc)
        self.procs.clear()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may never have started
            pass
        if self.db is not None:
            self.db.drop()
        if self.redis is not None:
            try:
                self.redis.flushdb()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(self.work, ignore_errors=True)


class SimProcess:
    """``python -m kubesim serve`` in a process of its own (as a real cluster runs on other machines)."""

    def __init__(self, fleet: dict, work: Path, tag: str = "sim"):
        self.dir = work / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "fleet.yaml").write_text(json.dumps(fleet))
        self.log_path = self.dir / "kubesim.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [PY, "-m", "kubesim", "serve", "--fleet", str(self.dir / "fleet.yaml"), "--port", "0",
                 "--kubeconfig-dir", str(self.dir / "kubeconfigs")],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while "control API:" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the simulator did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        text = self.log_path.read_text()
        self.base_url = text.split("serving at ", 1)[1].split()[0]
        self.ssl = ssl.create_default_context(cafile=str(self.dir / "kubeconfigs" / "kubesim-ca.crt"))

    def kubeconfig(self, name: str) -> str:
        return (self.dir / "kubeconfigs" / f"{name}.yaml").read_text()

    def control(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base_url}/_sim/{path}", context=self.ssl, timeout=30) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        _stop_group(self.proc, 30)


class ReadyWatch(threading.Thread):
    """Ready (and not terminating) pods of an app, followed with a watch: every change is seen, none sampled.

    One LIST, then watches resumed from the last resourceVersion (a 410 lists again).
    ``samples`` holds (time, ready) at each change; ``minimum`` the lowest count seen.
    """

    def __init__(self, kubeconfig: str, selector: str = "app=web", namespace: str = "default"):
        super().__init__(name="ready-watch", daemon=True)
        from clusters.upgrades.testing import client_for

        self.api = client_for(kubeconfig)
        self.selector, self.namespace = selector, namespace
        self.pods: dict[str, bool] = {}
        self.samples: list[tuple[float, int]] = []
        self.events = self.relists = self.errors = 0
        self._halt = threading.Event()
        self._listed = threading.Event()

    @staticmethod
    def ready(pod: dict) -> bool:
        if pod["metadata"].get("deletionTimestamp"):
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (pod.get("status") or {}).get("conditions") or [])

    def _record(self) -> None:
        count = sum(self.pods.values())
        if not self.samples or self.samples[-1][1] != count:
            self.samples.append((time.monotonic(), count))

    def _list(self) -> str:
        from kubernetes import client

        raw = client.CoreV1Api(self.api).list_namespaced_pod(self.namespace, label_selector=self.selector,
                                                             _preload_content=False)
        body = json.loads(raw.data)
        self.pods = {p["metadata"]["name"]: self.ready(p) for p in body.get("items") or []}
        self.relists += 1
        self._record()
        self._listed.set()
        return body["metadata"]["resourceVersion"]

    def run(self) -> None:
        from kubernetes import client
        from kubernetes.watch.watch import iter_resp_lines

        core = client.CoreV1Api(self.api)
        rv = None
        while not self._halt.is_set():
            try:
                if rv is None:
                    rv = self._list()
                resp = core.list_namespaced_pod(self.namespace, label_selector=self.selector, watch=True,
                                                resource_version=rv, timeout_seconds=1, _preload_content=False)
                try:
                    for line in iter_resp_lines(resp):
                        if not line:
                            continue
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            rv = None  # 410 Gone (or another error): list again
                            break
                        rv = obj["metadata"].get("resourceVersion") or rv
                        if event["type"] == "BOOKMARK":
                            continue
                        self.events += 1
                        if event["type"] == "DELETED":
                            self.pods.pop(obj["metadata"]["name"], None)
                        else:
                            self.pods[obj["metadata"]["name"]] = self.ready(obj)
                        self._record()
                finally:
                    resp.close()
                    resp.release_conn()
            except Exception:  # noqa: BLE001 - counted; the next round lists again
                self.errors += 1
                rv = None
                self._halt.wait(0.1)

    def begin(self) -> ReadyWatch:
        self.start()
        if not self._listed.wait(30):
            raise SystemExit("could not list the app's pods")
        return self

    def stop(self) -> ReadyWatch:
        self._halt.set()
        self.join(10)
        self.api.close()
        return self

    @property
    def minimum(self) -> int:
        return min(n for _, n in self.samples)
