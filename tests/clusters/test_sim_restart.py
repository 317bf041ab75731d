"""The simulator restarted with its state directory is an outage, not a new fleet: imported clusters come back."""
from __future__ import annotations

import pytest

from clusters import inventory
from clusters.models import Cluster

pytestmark = pytest.mark.django_db

FLEET = {
    "defaults": {"timings": {"pod_start": 0.05, "heartbeat": 0.2, "node_grace": 2, "upgrade_down": 0.1}},
    "clusters": [
        {"name": "rke-r", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2}},
    ],
}


def test_imported_cluster_syncs_back_to_active_after_a_simulator_restart(admin_api, tmp_path):
    from kubesim import start_fleet

    state = tmp_path / "kubesim"
    sim = start_fleet(FLEET, state_dir=state)
    try:
        response = admin_api.post("/v3/clusters/", {"name": "rke-r", "kubeconfig": sim.kubeconfig("rke-r")},
                                  format="json")
        assert response.status_code == 201, response.content
        # the cluster's control plane is upgraded behind the portal's back (what a Plan would do)
        c = sim.clusters["rke-r"]
        with c.lock:
            c.nodes["rke-r-controlplane-1"].version = "v1.16.8"
            c.refresh_version()
    finally:
        sim.stop()
    cluster = Cluster.objects.get(name="rke-r")
    report = inventory.sync_clusters([cluster.pk])
    cluster.refresh_from_db()
    assert report.unavailable == ["rke-r"] and cluster.state == "unavailable"

    sim = start_fleet(FLEET, state_dir=state)  # the same command again
    try:
        report = inventory.sync_clusters([cluster.pk])
        cluster.refresh_from_db()
        assert report.reachable == 1, report
        assert cluster.state == "active" and cluster.state_reason == ""
        assert cluster.kubernetes_version == "v1.16.8"  # not back at the fleet file's v1.15.11
        assert cluster.nodes.count() == 4
    finally:
        sim.stop()
