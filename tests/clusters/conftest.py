"""Cluster tests use the ``fleet`` fixture from tests/conftest.py."""
SMALL_FLEET = {
    "defaults": {"timings": {"pod_start": 0.2, "upgrade_down": 0.5, "heartbeat": 1, "node_grace": 4}},
    "clusters": [
        {"name": "rke-a", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2}},
        {"name": "k3s-a", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 2}},
        {"name": "imp-a", "kind": "imported", "version": "v1.18.6", "nodes": {"controlplane": 1, "worker": 1}},
    ],
}


