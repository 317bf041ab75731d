"""Importing clusters by kubeconfig and keeping their inventory fresh, against the simulator."""
from __future__ import annotations

import pytest
import yaml

from clusters import inventory
from clusters.models import Cluster, ClusterConfigVersion, Node
from portal.models import AuditEvent, Job
from rbac.models import ClusterRoleBinding

pytestmark = pytest.mark.django_db


def _import(api, fleet, name, as_name=None):
    return api.post("/v3/clusters/", {"name": as_name or name, "kubeconfig": fleet.kubeconfig(name)}, format="json")


@pytest.mark.parametrize("name,kind,version,nodes", [
    ("rke-a", "rke", "v1.15.11", 4), ("k3s-a", "k3s", "v1.17.4+k3s1", 3), ("imp-a", "imported", "v1.18.6", 2),
])
def test_import_detects_kind_version_and_nodes(api, make_user, fleet, name, kind, version, nodes):
    user = make_user("ops")
    api.force_login(user)
    response = _import(api, fleet, name)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["kubernetes_version"], body["node_count"], body["state"]) == (kind, version, nodes, "active")
    assert "token" not in body["kubeconfig"] and body["kubeconfig"].startswith("••••")
    cluster = Cluster.objects.get(name=name)
    assert cluster.nodes.count() == nodes
    assert ClusterRoleBinding.objects.filter(cluster=cluster, user=user, role__name="cluster-owner").exists()
    assert cluster.config.document["kubernetes_version"] == version
    assert AuditEvent.objects.filter(action="create", object_id=str(cluster.pk)).exists()


def test_rke_node_roles_and_details(admin_api, fleet):
    _import(admin_api, fleet, "rke-a")
    nodes = {n["name"]: n for n in admin_api.get("/v3/nodes/?cluster=" + str(Cluster.objects.get().pk)).json()["results"]}
    etcd = nodes["rke-a-etcd-1"]
    assert etcd["roles"] == ["etcd"] and etcd["ready"] is True and etcd["kubelet_version"] == "v1.15.11"
    assert etcd["os_image"] and etcd["container_runtime"].startswith(("docker://", "containerd://"))
    assert etcd["capacity"]["pods"] == "110"
    assert any(t["key"] == "node-role.kubernetes.io/etcd" for t in etcd["taints"])
    assert {c["type"] for c in etcd["conditions"]} >= {"Ready", "MemoryPressure"}


@pytest.mark.parametrize("make_kubeconfig,expected", [
    (lambda sim: "clusters: [", "not valid YAML at line 1"),
    (lambda sim: sim.kubeconfig("rke-a").replace(sim.clusters["rke-a"].token, "wrong-token"), "401 Unauthorized"),
    (lambda sim: sim.kubeconfig("rke-a").replace(f"127.0.0.1:{sim.port}", "127.0.0.1:9"), "connection refused"),
    (lambda sim: yaml.safe_dump({**yaml.safe_load(sim.kubeconfig("rke-a")), "users": [
        {"name": "rke-a-admin", "user": {}}]}), "has no credentials"),
])
def test_bad_kubeconfig_is_refused_and_nothing_saved(admin_api, fleet, make_kubeconfig, expected):
    before = AuditEvent.objects.count()
    response = admin_api.post("/v3/clusters/", {"name": "bad", "kubeconfig": make_kubeconfig(fleet)}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert expected in error["fields"]["kubeconfig"][0], error
    assert not Cluster.objects.exists() and not Node.objects.exists()
    assert AuditEvent.objects.count() == before


def test_offline_cluster_is_refused_at_import(admin_api, fleet):
    fleet.set_online("rke-a", False)
    response = _import(admin_api, fleet, "rke-a")
    assert response.status_code == 400
    assert "unavailable (503)" in response.json()["error"]["fields"]["kubeconfig"][0]


def test_duplicate_name_is_refused(admin_api, fleet):
    assert _import(admin_api, fleet, "rke-a").status_code == 201
    response = _import(admin_api, fleet, "k3s-a", as_name="rke-a")
    assert response.status_code == 400
    assert Cluster.objects.count() == 1


def test_user_base_cannot_import(api, make_user, fleet):
    from rbac.models import GlobalRoleBinding

    user = make_user("guest")
    GlobalRoleBinding.objects.filter(user=user).update(role=__import__("rbac.models").models.GlobalRole.objects.get(name="user-base"))
    api.force_login(user)
    assert _import(api, fleet, "rke-a").status_code == 403
    assert not Cluster.objects.exists()


def test_sync_goes_unavailable_with_reason_and_comes_back(admin_api, fleet, run_jobs):
    _import(admin_api, fleet, "rke-a")
    cluster = Cluster.objects.get()
    fleet.set_online("rke-a", False, mode="refuse")
    report = inventory.sync_clusters([cluster.pk])
    cluster.refresh_from_db()
    assert report.unavailable == ["rke-a"]
    assert cluster.state == "unavailable"
    assert "closed the connection" in cluster.state_reason or "connection refused" in cluster.state_reason
    assert cluster.nodes.count() == 4  # last known inventory is kept

    fleet.set_online("rke-a", True)
    response = admin_api.post(f"/v3/clusters/{cluster.pk}/sync/")
    assert response.status_code == 202
    run_jobs()
    cluster.refresh_from_db()
    assert cluster.state == "active" and cluster.state_reason == ""
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == "succeeded" and job.result["reachable"] == 1


def test_sync_sees_cordon_new_and_removed_nodes(admin_api, fleet):
    from kubernetes import client

    from clusters import kube

    _import(admin_api, fleet, "imp-a")
    cluster = Cluster.objects.get()
    api = kube.api_client(fleet.kubeconfig("imp-a"))
    core = client.CoreV1Api(api)
    core.patch_node("imp-a-worker-1", {"spec": {"unschedulable": True}})
    # A machine taken away: powered off first, or its kubelet would register the Node again (as a real one does).
    fleet.set_node_up("imp-a", "imp-a-controlplane-1", False)
    core.delete_node("imp-a-controlplane-1")
    api.close()
    report = inventory.sync_clusters([cluster.pk])
    assert report.nodes_deleted == 1
    worker = Node.objects.get(name="imp-a-worker-1")
    assert worker.unschedulable and worker.state == "Cordoned"
    assert not Node.objects.filter(name="imp-a-controlplane-1").exists()
    cluster.refresh_from_db()
    assert cluster.node_count == 1


def test_fleet_sync_splits_into_batches(admin_api, fleet, run_jobs, settings):
    for name in ("rke-a", "k3s-a", "imp-a"):
        _import(admin_api, fleet, name)
    from portal import jobs

    jobs.enqueue("clusters.sync_fleet", params={"batch_size": 2})
    ran = run_jobs()
    syncs = [j for j in ran if j.kind == "clusters.sync"]
    assert len(syncs) == 2 and all(j.status == "succeeded" for j in syncs)
    assert sum(j.result["clusters"] for j in syncs) == 3


def test_config_history_starts_at_import(admin_api, fleet):
    _import(admin_api, fleet, "rke-a")
    assert ClusterConfigVersion.objects.count() == 1


def test_unchanged_nodes_are_not_rewritten(admin_api, fleet):
    from kubernetes import client

    from clusters import kube

    _import(admin_api, fleet, "rke-a")
    cluster = Cluster.objects.get()
    first = inventory.sync_clusters([cluster.pk])
    assert first.nodes_seen == 4
    quiet = inventory.sync_clusters([cluster.pk])
    assert quiet.nodes_seen == 4 and quiet.nodes_written == 0
    api = kube.api_client(fleet.kubeconfig("rke-a"))
    client.CoreV1Api(api).patch_node("rke-a-worker-2", {"spec": {"unschedulable": True}})
    api.close()
    after = inventory.sync_clusters([cluster.pk])
    assert after.nodes_written == 1
    assert Node.objects.get(name="rke-a-worker-2").unschedulable


def test_refused_credentials_put_the_cluster_in_error_until_fixed(admin_api, fleet):
    _import(admin_api, fleet, "k3s-a")
    cluster = Cluster.objects.get()
    fleet.rotate_token("k3s-a")
    inventory.sync_clusters([cluster.pk])
    cluster.refresh_from_db()
    assert cluster.state == "error" and "401 Unauthorized" in cluster.state_reason
    response = admin_api.patch(f"/v3/clusters/{cluster.pk}/", {"kubeconfig": fleet.kubeconfig("k3s-a")}, format="json")
    assert response.status_code == 200, response.content
    inventory.sync_clusters([cluster.pk])
    cluster.refresh_from_db()
    assert cluster.state == "active" and cluster.state_reason == ""
