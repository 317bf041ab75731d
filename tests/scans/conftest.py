from __future__ import annotations

import pytest

from clusters.models import Cluster

SCAN_FLEET = {
    "defaults": {"timings": {"pod_start": 0.1, "job_run": 0.2, "heartbeat": 1, "node_grace": 4}},
    "clusters": [
        {"name": "rke-old", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2},
         "workloads": [{"deployment": {"name": "web", "namespace": "default", "replicas": 1}}]},
        {"name": "k3s-new", "kind": "k3s", "version": "v1.26.4+k3s1", "nodes": {"server": 1, "agent": 1}},
        {"name": "kube-new", "kind": "imported", "version": "v1.27.3", "nodes": {"controlplane": 1, "worker": 1}},
    ],
}


@pytest.fixture
def scan_fleet():
    from kubesim import start_fleet

    sim = start_fleet(SCAN_FLEET, time_scale=0.2)
    yield sim
    sim.stop()


@pytest.fixture
def register(db):
    """Put a simulated cluster in Corral's inventory, as an import would."""

    def make(sim, name: str, **extra) -> Cluster:
        c = sim.clusters[name]
        return Cluster.objects.create(name=name, kind=c.kind, kubernetes_version=c.version, state="active",
                                      kubeconfig=sim.kubeconfig(name), **extra)

    return make
