"""Fixtures for the simulator's own tests (no Django needed)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubesim import Fleet, start_fleet

SDK_BIN = Path("/usr/lib/google-cloud-sdk/bin")
KUBECTL_VERSIONS = ("1.27", "1.33")  # the oldest and newest kubectl the SDK ships

# Fast timings: a whole upgrade or rollout takes well under a second.
FAST = {"pod_start": 0.05, "pod_stop": 0.05, "job_run": 0.1, "heartbeat": 0.2, "node_status": 2,
        "node_grace": 1.0, "eviction_timeout": 1.0, "upgrade_down": 0.3, "kubelet_restart": 0.1}

SMALL_FLEET: dict[str, Any] = {
    "defaults": {"timings": FAST},
    "clusters": [
        {"name": "rke1", "kind": "rke", "version": "v1.15.11",
         "nodes": {"etcd": 1, "controlplane": 1, "worker": 3},
         "workloads": [{"deployment": {"name": "web", "replicas": 3, "image": "nginx:1.17.9"},
                        "pdb": {"name": "web", "minAvailable": 2}},
                       {"daemonset": {"name": "node-exporter", "namespace": "kube-system", "image": "prom/node-exporter",
                                      "tolerate_all": True}}]},
        {"name": "k3s1", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 2}},
        {"name": "new1", "kind": "imported", "version": "v1.27.3", "nodes": {"controlplane": 1, "worker": 2}},
    ],
}


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    sim = start_fleet(SMALL_FLEET)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def kube_client(fleet: Fleet) -> Callable[[str], Any]:
    """Official-client ApiClient for a cluster of the fleet."""
    from kubernetes import config

    def make(name: str) -> Any:
        return config.new_client_from_config_dict(yaml.safe_load(fleet.kubeconfig(name)))

    return make


@pytest.fixture(params=KUBECTL_VERSIONS, ids=lambda v: f"kubectl-{v}")
def kubectl_binary(request: pytest.FixtureRequest) -> str:
    path = SDK_BIN / f"kubectl.{request.param}"
    if not path.exists():
        found = shutil.which(f"kubectl.{request.param}")
        if not found:
            pytest.skip(f"kubectl {request.param} not installed (expected {path})")
        return found
    return str(path)
