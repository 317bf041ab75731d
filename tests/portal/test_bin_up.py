"""bin/up keeps the stack running: a killed worker is started again, Ctrl-C stops everything cleanly."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, wait_for
from tests.portal.test_scheduler import PrivateRedis, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("setsid") is None,
                       reason="needs redis-server and setsid"),
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def _pid(run: Path, name: str) -> int | None:
    try:
        return int((run / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_bin_up_restarts_a_killed_worker_and_stops_cleanly_on_ctrl_c(tmp_path):
    redis = PrivateRedis(tmp_path).start()
    data = tmp_path / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "CORRAL_ENCRYPTION_KEYS")}
    env.update(CORRAL_DATA_DIR=str(data), STATIC_ROOT=str(tmp_path / "static"), REDIS_URL=redis.url,
               PORT=str(port), SIM_PORT=str(free_port()), CORRAL_DEMO="0", PYTHONUNBUFFERED="1")
    out = tmp_path / "up.out"
    with open(out, "wb") as log:
        up = subprocess.Popen([str(ROOT / "bin" / "up")], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    run = data / "run"
    try:
        ready = f"http://127.0.0.1:{port}/readyz"
        wait_for(lambda: _get(ready) == 200, timeout=90, interval=0.5, message=f"bin/up to be ready: {out}")
        workers = {name: _pid(run, name) for name in ("worker", "worker-clusters", "scheduler", "web")}
        assert all(workers.values()), workers
        assert _get(f"http://127.0.0.1:{port}/static/admin/css/base.css") == 200  # WhiteNoise under gunicorn

        os.kill(workers["worker-clusters"], signal.SIGKILL)
        new = wait_for(lambda: (p := _pid(run, "worker-clusters")) not in (None, workers["worker-clusters"]) and p,
                       timeout=20, message="a new clusters worker")
        assert _alive(new)
        assert "worker-clusters exited (status 137); restarting it" in out.read_text()
        assert all(_alive(_pid(run, name)) for name in ("worker", "scheduler", "web"))

        up.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal does
        assert up.wait(40) == 0
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        redis.stop()
    text = out.read_text()
    assert "stopped" in text.splitlines()[-1]
    for noise in ("Traceback", "Killed", "Terminated", "command not found", "a process exited"):
        assert noise not in text, text
    left = [name for name in ("worker", "worker-clusters", "scheduler", "web") if (pid := _pid(run, name)) and _alive(pid)]
    assert left == [] and not any(_alive(p) for p in [new, *workers.values()])
