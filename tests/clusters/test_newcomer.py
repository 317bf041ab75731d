"""What a new user hit while importing and looking at clusters: names, duplicate imports, the config page, node table."""
from __future__ import annotations

import pytest

from clusters import config as cluster_config
from clusters import schema
from clusters.models import Cluster, Node
from rbac.models import ClusterRoleBinding, RoleTemplate

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", ["My_Cluster", "UPPER", "-dash-first", "dash-last-", "a" * 64, "dots.in.name", ""])
def test_cluster_names_are_dns_labels(admin_api, client, admin_user, name):
    before = Cluster.objects.count()
    response = admin_api.post("/v3/clusters/", {"name": name, "kubeconfig": "clusters: []"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]
    client.force_login(admin_user)
    page = client.post("/admin/clusters/cluster/add/", {"name": name, "description": "", "kubeconfig": "x"})
    assert page.status_code == 200 and "errorlist" in page.content.decode()
    assert Cluster.objects.count() == before


def test_the_same_api_server_is_not_imported_twice(api, make_user, fleet):
    owner, stranger = make_user("owner"), make_user("stranger")
    api.force_login(owner)
    first = api.post("/v3/clusters/", {"name": "rke-a", "kubeconfig": fleet.kubeconfig("rke-a")}, format="json")
    assert first.status_code == 201, first.content
    again = api.post("/v3/clusters/", {"name": "rke-a-again", "kubeconfig": fleet.kubeconfig("rke-a")}, format="json")
    assert again.status_code == 400
    assert "already imported as cluster 'rke-a'" in again.json()["error"]["fields"]["kubeconfig"][0]
    # Someone who cannot see the first import learns only that it exists, not its name.
    api.force_login(stranger)
    hidden = api.post("/v3/clusters/", {"name": "mine", "kubeconfig": fleet.kubeconfig("rke-a")}, format="json")
    assert hidden.status_code == 400
    message = hidden.json()["error"]["fields"]["kubeconfig"][0]
    assert "already imported" in message and "rke-a'" not in message
    assert Cluster.objects.count() == 1


def test_rke_config_has_no_k3s_section_and_refuses_one():
    rke = Cluster.objects.create(name="r1", kubeconfig="x", kind="rke", kubernetes_version="v1.15.11")
    k3s = Cluster.objects.create(name="k1", kubeconfig="x", kind="k3s", kubernetes_version="v1.17.4+k3s1")
    assert "k3s_upgrade_strategy" not in schema.to_yaml(cluster_config.initial_document(rke))
    assert "k3s_upgrade_strategy" in schema.to_yaml(cluster_config.initial_document(k3s))
    doc = schema.defaults()
    doc["kubernetes_version"] = "v1.15.11"
    assert "k3s_upgrade_strategy" not in schema.validate(doc, kind="rke")  # the defaults: left out quietly
    doc["k3s_upgrade_strategy"]["drain_server_nodes"] = not doc["k3s_upgrade_strategy"].get("drain_server_nodes")
    with pytest.raises(schema.ConfigError, match="only k3s clusters"):
        schema.validate(doc, kind="rke")


def test_node_table_shows_each_name_once_and_roles_as_words(client, make_user):
    owner = make_user("owner")
    cluster = Cluster.objects.create(name="c1", kubeconfig="x", state="active")
    ClusterRoleBinding.objects.create(cluster=cluster, role=RoleTemplate.objects.get(name="cluster-owner"), user=owner)
    Node.objects.create(cluster=cluster, name="c1-etcd-1", roles=["etcd", "controlplane"], ready=True)
    client.force_login(owner)
    page = client.get(f"/admin/clusters/cluster/{cluster.pk}/change/").content.decode()
    assert "etcd, controlplane" in page
    assert "[&#x27;etcd&#x27;" not in page and '["etcd"' not in page
    assert "corral-readonly-rows" in page  # the inline's repeated row title is hidden
    listing = client.get("/admin/clusters/node/").content.decode()
    assert "etcd, controlplane" in listing
