"""Importing a cluster with a least-privilege token (RBAC enforced by the simulator)."""
from __future__ import annotations

import pytest

from clusters import inventory, kube
from clusters.models import Cluster, Node
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

RBAC = "rbac.authorization.k8s.io"
FLEET = {
    "defaults": {"timings": {"pod_start": 0.2, "heartbeat": 1, "node_grace": 4}},
    "clusters": [{
        "name": "lp", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2},
        "users": [{"name": "corral-reader", "token": "reader-token"}, {"name": "pod-peeker", "token": "peek-token"}],
        "service_accounts": [{"name": "corral", "namespace": "kube-system"}],
        "rbac": [
            {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": {"name": "corral-inventory"},
             "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "corral-inventory"},
             "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "corral-inventory"},
             "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "corral-reader"},
                          {"kind": "ServiceAccount", "name": "corral", "namespace": "kube-system"}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": {"name": "pods", "namespace": "default"},
             "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
            {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": "pods", "namespace": "default"},
             "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "pods"},
             "subjects": [{"apiGroup": RBAC, "kind": "User", "name": "pod-peeker"}]},
        ],
    }],
}


@pytest.fixture
def lp_fleet():
    from kubesim import start_fleet

    sim = start_fleet(FLEET, time_scale=0.2)
    yield sim
    sim.stop()


def _import(api, sim, who, name="lp"):
    return api.post("/v3/clusters/", {"name": name, "kubeconfig": sim.kubeconfig("lp", who)}, format="json")


@pytest.mark.parametrize("who", ["corral-reader", "kube-system/corral"])
def test_token_that_may_list_nodes_and_read_version_imports(admin_api, lp_fleet, who):
    response = _import(admin_api, lp_fleet, who)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["kubernetes_version"], body["node_count"], body["state"]) == ("rke", "v1.15.11", 4,
                                                                                             "active")
    assert Node.objects.filter(cluster__name="lp").count() == 4
    report = inventory.sync_clusters([Cluster.objects.get().pk])
    assert report.unavailable == []


def test_token_that_may_not_list_nodes_is_refused_naming_what_it_lacks(admin_api, lp_fleet):
    before = AuditEvent.objects.count()
    response = _import(admin_api, lp_fleet, "pod-peeker")
    assert response.status_code == 400
    message = response.json()["error"]["fields"]["kubeconfig"][0]
    assert "may not list nodes (403 Forbidden)" in message, message
    assert "Corral needs to read /version and to list nodes" in message
    assert 'User "pod-peeker" cannot list resource "nodes" in API group "" at the cluster scope' in message
    assert not Cluster.objects.exists() and not Node.objects.exists()
    assert AuditEvent.objects.count() == before


def test_token_that_may_not_read_version_is_refused_naming_it(lp_fleet):
    c = lp_fleet.clusters["lp"]
    rt = c.rt(f"clusterrolebindings.{RBAC}")
    with c.lock:
        for name in ("system:discovery", "system:public-info-viewer"):
            c.api.delete(rt, "", name)
    with pytest.raises(kube.ClusterError) as exc:
        inventory.check_kubeconfig(lp_fleet.kubeconfig("lp", "corral-reader"))
    assert exc.value.status == 403
    assert "may not read the server's version (/version) (403 Forbidden)" in exc.value.reason
    assert 'User "corral-reader" cannot get path "/version/"' in exc.value.reason  # the client asks /version/


def test_access_taken_away_after_import_shows_in_the_sync_reason(admin_api, lp_fleet):
    assert _import(admin_api, lp_fleet, "corral-reader").status_code == 201
    cluster = Cluster.objects.get()
    c = lp_fleet.clusters["lp"]
    with c.lock:
        c.api.delete(c.rt(f"clusterrolebindings.{RBAC}"), "", "corral-inventory")
    inventory.sync_clusters([cluster.pk])
    cluster.refresh_from_db()
    assert "may not list nodes (403 Forbidden)" in cluster.state_reason, cluster.state_reason
    assert cluster.nodes.count() == 4  # last known inventory is kept
