"""`serve --state-dir`: a restart is an outage of the same fleet (kubesim/persist.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FAST
from ksim_helpers import wait_until
from kubernetes import client, config

from kubesim import start_fleet

ROOT = Path(__file__).resolve().parents[2]
FLEET: dict[str, Any] = {
    "defaults": {"timings": FAST},
    "clusters": [
        {"name": "edge", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 1},
         "workloads": [{"deployment": {"name": "web", "replicas": 2}}]},
        {"name": "plain", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 1}},
    ],
}


class Served:
    """`python -m kubesim serve ...` in a subprocess, as bin/up runs it."""

    def __init__(self, tmp: Path, fleet: dict[str, Any], interval: float = 0.5) -> None:
        self.tmp = tmp
        self.fleet_file = tmp / "fleet.yaml"
        self.fleet_file.write_text(yaml.safe_dump(fleet))
        self.state = tmp / "state"
        self.kubeconfigs = tmp / "kubeconfigs"
        self.interval = interval
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> Served:
        self.runs += 1
        log = self.tmp / f"serve-{self.runs}.log"
        for p in self.kubeconfigs.glob("*.yaml"):
            p.unlink()
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubesim", "serve", "--fleet", str(self.fleet_file), "--port", "0",
                 "--kubeconfig-dir", str(self.kubeconfigs), "--state-dir", str(self.state),
                 "--state-interval", str(self.interval)],
                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        wait_until(lambda: b"control API:" in log.read_bytes() or self.proc.poll() is not None, timeout=60)
        assert self.proc.poll() is None, log.read_text()
        return self

    def kubeconfig(self, name: str) -> str:
        return (self.kubeconfigs / f"{name}.yaml").read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        return rc


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path, FLEET)
    try:
        yield s
    finally:
        if s.proc is not None:
            s.proc.kill()
            s.proc.wait()


def _api(kubeconfig: str) -> Any:
    return config.new_client_from_config_dict(yaml.safe_load(kubeconfig))


def _upgrade_server(api: Any, version: str) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", {
        "apiVersion": "upgrade.cattle.io/v1", "kind": "Plan", "metadata": {"name": "k3s-server", "namespace": "system-upgrade"},
        "spec": {"concurrency": 1, "serviceAccountName": "system-upgrade", "version": version,
                 "nodeSelector": {"matchLabels": {"node-role.kubernetes.io/master": "true"}},
                 "upgrade": {"image": "rancher/k3s-upgrade"}}})


def _kubelet_version(v1: Any, node: str) -> str:
    return v1.read_node(node).status.node_info.kubelet_version


def test_sigterm_restart_keeps_ca_tokens_objects_and_node_versions(served: Served) -> None:
    served.start()
    kc_edge, kc_plain = served.kubeconfig("edge"), served.kubeconfig("plain")
    edge = _api(kc_edge)
    v1 = client.CoreV1Api(edge)
    cm = v1.create_namespaced_config_map("default", {"metadata": {"name": "kept", "labels": {"a": "b"}},
                                                     "data": {"k": "v"}})
    _upgrade_server(edge, "v1.17.5+k3s1")
    wait_until(lambda: _kubelet_version(v1, "edge-server-1") == "v1.17.5+k3s1", timeout=30)
    wait_until(lambda: client.VersionApi(edge).get_code().git_version == "v1.17.5+k3s1", timeout=10)
    pods_before = {p.metadata.name: p.metadata.resource_version
                   for p in v1.list_namespaced_pod("default", label_selector="app=web").items}
    plain_ns = client.CoreV1Api(_api(kc_plain)).create_namespace({"metadata": {"name": "team-a"}})
    assert served.stop(signal.SIGTERM) == 0
    state_file = served.state / "fleet-state.json.gz"
    assert state_file.exists() and (state_file.stat().st_mode & 0o777) == 0o600

    served.start()
    # the kubeconfigs written are identical: same CA, same token, same port
    assert served.kubeconfig("edge") == kc_edge and served.kubeconfig("plain") == kc_plain
    # and the clients built from the old ones work
    v1 = client.CoreV1Api(_api(kc_edge))
    got = v1.read_namespaced_config_map("kept", "default")
    assert got.data == {"k": "v"} and got.metadata.resource_version == cm.metadata.resource_version
    assert got.metadata.uid == cm.metadata.uid
    assert _kubelet_version(v1, "edge-server-1") == "v1.17.5+k3s1"
    assert _kubelet_version(v1, "edge-agent-1") == "v1.17.4+k3s1"
    assert client.VersionApi(_api(kc_edge)).get_code().git_version == "v1.17.5+k3s1"
    # the same pods (not new ones from the fleet file)
    pods_after = {p.metadata.name for p in v1.list_namespaced_pod("default", label_selector="app=web").items}
    assert pods_after == set(pods_before)
    plain = client.CoreV1Api(_api(kc_plain))
    assert plain.read_namespace("team-a").metadata.uid == plain_ns.metadata.uid
    # the plan is done: it does not run again
    plan = client.CustomObjectsApi(_api(kc_edge)).get_namespaced_custom_object(
        "upgrade.cattle.io", "v1", "system-upgrade", "plans", "k3s-server")
    assert plan["status"]["latestVersion"] == "v1.17.5-k3s1"
    # new writes continue from the saved revision
    newer = v1.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    assert int(newer.metadata.resource_version) > int(cm.metadata.resource_version)
    # the nodes stay Ready after the restart (kubelets heartbeat again)
    time.sleep(FAST["node_grace"] * 2)
    for n in v1.list_node().items:
        assert next(c.status for c in n.status.conditions if c.type == "Ready") == "True", n.metadata.name
    assert served.stop(signal.SIGINT) == 0


def test_sigkill_loses_at_most_the_last_period(served: Served) -> None:
    served.start()
    kc = served.kubeconfig("plain")
    v1 = client.CoreV1Api(_api(kc))
    early = v1.create_namespaced_config_map("default", {"metadata": {"name": "early"}})
    time.sleep(served.interval * 3)  # several periodic writes
    v1.create_namespaced_config_map("default", {"metadata": {"name": "late"}})
    served.stop(signal.SIGKILL)

    served.start()
    assert served.kubeconfig("plain") == kc
    v1 = client.CoreV1Api(_api(kc))
    got = v1.read_namespaced_config_map("early", "default")
    assert got.metadata.resource_version == early.metadata.resource_version
    # "late" was written less than one period before the kill: it may or may not be there
    names = {c.metadata.name for c in v1.list_namespaced_config_map("default").items}
    assert "early" in names


def test_new_fleet_file_clusters_are_created_and_known_ones_loaded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = {"defaults": {"timings": FAST}, "clusters": [FLEET["clusters"][1]]}
    sim = start_fleet(first, state_dir=state, state_interval=60)
    token, port = sim.clusters["plain"].token, sim.port
    c = sim.clusters["plain"]
    c.nodes["plain-worker-1"].kubelet_args["max-pods"] = "50"
    c.nodes["plain-worker-1"].disk.write("/var/lib/x", b"data")
    sim.stop()

    sim = start_fleet(FLEET, state_dir=state, state_interval=60)
    try:
        assert sim.port == port and sim.clusters["plain"].token == token
        assert sim.clusters["plain"].nodes["plain-worker-1"].kubelet_args == {"max-pods": "50"}
        assert sim.clusters["plain"].nodes["plain-worker-1"].disk.read("/var/lib/x") == b"data"
        assert "edge" in sim.clusters and sim.clusters["edge"].version == "v1.17.4+k3s1"
        v1 = client.CoreV1Api(_api(sim.kubeconfig("plain")))
        wait_until(lambda: v1.read_node("plain-worker-1").status.allocatable["pods"] == "50", timeout=10)
    finally:
        sim.stop()
    # a cluster the state has but the fleet file does not list (say, added through the control API) stays
    sim = start_fleet(first, state_dir=state, state_interval=60)
    try:
        assert set(sim.clusters) == {"plain", "edge"}
    finally:
        sim.stop()


def test_state_file_is_replaced_atomically(tmp_path: Path) -> None:
    sim = start_fleet({"defaults": {"timings": FAST}, "clusters": [FLEET["clusters"][1]]},
                      state_dir=tmp_path, state_interval=0.05)
    try:
        wait_until(lambda: sim.state is not None and sim.state.saves >= 5, timeout=10)
        assert sorted(os.listdir(tmp_path)) == ["fleet-state.json.gz"]
    finally:
        sim.stop()
