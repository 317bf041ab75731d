"""Corral's node-config image script, run against a temporary directory standing for the host's root."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "clusters/nodeops/images/node-config/node-config.py"
DROP_IN = "config.yaml.d/90-corral-kubelet.yaml"


def run(host: Path, *args: str, path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run([sys.executable, str(SCRIPT), "--host-root", str(host), *args], capture_output=True,
                          text=True, env=env, timeout=30)


@pytest.fixture
def fake_chroot(tmp_path):
    """A `chroot` on PATH that records what it was asked and says rke2-agent / k3s-agent are active."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "chroot.log"
    script = bin_dir / "chroot"
    script.write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$*" in
  *"is-active --quiet rke2-agent"*|*"is-active --quiet k3s-agent"*) exit 0 ;;
  *"is-active"*) exit 3 ;;
esac
exit 0
""")
    script.chmod(0o755)
    return bin_dir, log


def test_writes_rke2_drop_in_restarts_and_is_idempotent(tmp_path, fake_chroot):
    host = tmp_path / "host"
    config = host / "etc/rancher/rke2"
    config.mkdir(parents=True)
    (config / "config.yaml").write_text("token: secret\nkubelet-arg:\n  - \"v=2\"\n")
    bin_dir, log = fake_chroot

    done = run(host, "--kubelet-arg=max-pods=250", "--kubelet-arg=eviction-hard=memory.available<5%", path=bin_dir)
    assert done.returncode == 0, done.stderr
    text = (config / DROP_IN).read_text()
    assert "kubelet-arg+:\n" in text
    assert '  - "eviction-hard=memory.available<5%"\n  - "max-pods=250"\n' in text
    assert (config / "config.yaml").read_text() == "token: secret\nkubelet-arg:\n  - \"v=2\"\n"  # left alone
    assert oct((config / DROP_IN).stat().st_mode & 0o777) == "0o600"
    calls = log.read_text().splitlines()
    assert f"{host} systemctl restart rke2-agent" in calls and "restarted rke2-agent" in done.stdout

    again = run(host, "--kubelet-arg=eviction-hard=memory.available<5%", "--kubelet-arg=max-pods=250", path=bin_dir)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert log.read_text().splitlines() == calls  # no second restart
    assert (config / DROP_IN).read_text() == text


def test_k3s_is_detected_and_no_arguments_remove_the_drop_in(tmp_path, fake_chroot):
    host = tmp_path / "host"
    (host / "etc/rancher/k3s").mkdir(parents=True)
    bin_dir, log = fake_chroot
    assert run(host, "--kubelet-arg=max-pods=250", "--no-restart", path=bin_dir).returncode == 0
    drop_in = host / "etc/rancher/k3s" / DROP_IN
    assert '"max-pods=250"' in drop_in.read_text() and not log.exists()
    removed = run(host, path=bin_dir)
    assert removed.returncode == 0 and not drop_in.exists()
    assert f"{host} systemctl restart k3s-agent" in log.read_text()


def test_refuses_bad_arguments_and_hosts_without_rke2_or_k3s(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    missing = run(host, "--kubelet-arg=max-pods=250", "--no-restart")
    assert missing.returncode == 1 and "neither RKE2 nor k3s" in missing.stderr
    (host / "etc/rancher/rke2").mkdir(parents=True)
    bad = run(host, "--kubelet-arg=Max Pods=1", "--no-restart")
    assert bad.returncode == 1 and "name=value" in bad.stderr
    assert not (host / "etc/rancher/rke2/config.yaml.d").exists()
