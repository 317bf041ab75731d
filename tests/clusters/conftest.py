"""A small simulated fleet for cluster tests: one cluster of each kind."""
from __future__ import annotations

import pytest

SMALL_FLEET = {
    "defaults": {"timings": {"pod_start": 0.2, "upgrade_down": 0.5, "heartbeat": 1, "node_grace": 4}},
    "clusters": [
        {"name": "rke-a", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2}},
        {"name": "k3s-a", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 2}},
        {"name": "imp-a", "kind": "imported", "version": "v1.18.6", "nodes": {"controlplane": 1, "worker": 1}},
    ],
}


@pytest.fixture
def fleet():
    from kubesim import start_fleet

    sim = start_fleet(SMALL_FLEET, time_scale=0.2)
    yield sim
    sim.stop()
