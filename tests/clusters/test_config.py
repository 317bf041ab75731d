"""Cluster config as YAML: schema errors name the field and line, every version is kept."""
from __future__ import annotations

import pytest

from clusters import config as cluster_config
from clusters import schema
from clusters.models import Cluster, ClusterConfigVersion

pytestmark = pytest.mark.django_db

GOOD = """kubernetes_version: v1.15.11
services:
  kubelet:
    extra_args:
      max-pods: "250"
upgrade_strategy:
  max_unavailable_worker: "25%"
  drain: true
  node_drain_input:
    timeout: 60
"""


@pytest.fixture
def cluster(admin_user):
    c = Cluster.objects.create(name="prod", kind="rke", kubernetes_version="v1.15.11", kubeconfig="k" * 20,
                               state="active")
    cluster_config.save_config(c, cluster_config.initial_document(c), user=admin_user, comment="imported")
    return c


def test_defaults_fill_in_what_is_missing(cluster, admin_user):
    version = cluster_config.save_yaml(cluster, GOOD, user=admin_user)
    doc = version.document
    assert doc["services"]["kubelet"]["extra_args"] == {"max-pods": "250"}
    assert doc["upgrade_strategy"]["max_unavailable_worker"] == "25%"
    assert doc["upgrade_strategy"]["max_unavailable_controlplane"] == "1"
    assert doc["upgrade_strategy"]["node_drain_input"] == {
        "force": False, "ignore_daemonsets": True, "delete_local_data": False, "grace_period": -1, "timeout": 60}
    assert version.source == GOOD and version.version == 2 and version.created_by == admin_user


@pytest.mark.parametrize("text,field,line,words", [
    (GOOD.replace('"25%"', '"lots"'), "upgrade_strategy.max_unavailable_worker", 7, "percentage"),
    (GOOD.replace("drain: true", "drain: maybe"), "upgrade_strategy.drain", 8, "true or false"),
    (GOOD.replace("    timeout: 60", "    timeout: 60\n    flood: 1"), "upgrade_strategy.node_drain_input.flood", 11,
     "unknown setting"),
    (GOOD.replace("v1.15.11", "v1.99.0"), "kubernetes_version", 1, "not a supported rke version"),
    ("kubernetes_version: [v1.15.11", "", 1, "not valid YAML"),
])
def test_invalid_document_names_field_and_line_and_saves_nothing(cluster, admin_api, text, field, line, words):
    with pytest.raises(schema.ConfigError) as exc:
        cluster_config.save_yaml(cluster, text)
    assert any(path == field and ln == line and words in msg for path, ln, msg in exc.value.errors), exc.value.errors
    response = admin_api.put(f"/v3/clusters/{cluster.pk}/config/", text.encode(), content_type="application/yaml")
    assert response.status_code == 400, response.content
    assert ClusterConfigVersion.objects.filter(cluster=cluster).count() == 1


def test_api_reads_and_writes_yaml_and_json(cluster, admin_api):
    response = admin_api.put(f"/v3/clusters/{cluster.pk}/config/", GOOD.encode(), content_type="application/yaml")
    assert response.status_code == 200, response.content
    # New kubelet arguments (max-pods 250) are rolled to the nodes by a job of their own.
    assert response.json()["version"] == 2 and response.json()["upgrade_job"]["kind"] == "clusters.kubelet_args"
    as_yaml = admin_api.get(f"/v3/clusters/{cluster.pk}/config/", HTTP_ACCEPT="application/yaml")
    assert as_yaml["Content-Type"].startswith("application/yaml")
    assert as_yaml.content.decode() == GOOD
    document = admin_api.get(f"/v3/clusters/{cluster.pk}/config/").json()["document"]
    document["upgrade_strategy"]["drain"] = False
    response = admin_api.put(f"/v3/clusters/{cluster.pk}/config/", {"document": document, "comment": "no drain"},
                             format="json")
    assert response.status_code == 200
    history = admin_api.get(f"/v3/clusters/{cluster.pk}/config/history/").json()["results"]
    assert [v["version"] for v in history] == [3, 2, 1]
    assert history[0]["comment"] == "no drain" and history[0]["created_by"] == "root"


def test_imported_cluster_version_cannot_be_changed(admin_user):
    c = Cluster.objects.create(name="imp", kind="imported", kubernetes_version="v1.18.6", kubeconfig="k" * 20)
    with pytest.raises(schema.ConfigError, match="managed outside Corral"):
        cluster_config.save_yaml(c, "kubernetes_version: v1.18.8\n")


def test_member_may_read_but_not_write_config(cluster, api):
    from tests.tenancy import make_tenant

    tenant = make_tenant("ta")
    api.force_login(tenant.member)
    assert api.get(f"/v3/clusters/{tenant.cluster.pk}/config/").status_code == 200
    response = api.put(f"/v3/clusters/{tenant.cluster.pk}/config/", GOOD.encode(), content_type="application/yaml")
    assert response.status_code == 403
    assert api.get(f"/v3/clusters/{cluster.pk}/config/").status_code == 404


def test_admin_edit_as_yaml_shows_errors_and_history(cluster, client, admin_user):
    client.force_login(admin_user)
    url = f"/admin/clusters/cluster/{cluster.pk}/config/"
    page = client.get(url).content.decode()
    assert "kubernetes_version: v1.15.11" in page and "imported" in page
    bad = client.post(url, {"yaml": GOOD.replace('"25%"', '"lots"'), "comment": ""})
    assert "upgrade_strategy.max_unavailable_worker (line 7)" in bad.content.decode()
    assert ClusterConfigVersion.objects.filter(cluster=cluster).count() == 1
    good = client.post(url, {"yaml": GOOD, "comment": "more pods"})
    assert good.status_code == 302
    assert cluster.config.document["services"]["kubelet"]["extra_args"]["max-pods"] == "250"


def test_an_unchanged_config_is_no_new_version(cluster, admin_api):
    before = ClusterConfigVersion.objects.filter(cluster=cluster).count()
    current = admin_api.get(f"/v3/clusters/{cluster.pk}/config/").json()
    again = admin_api.put(f"/v3/clusters/{cluster.pk}/config/", {"document": current["document"]}, format="json")
    assert again.status_code == 200
    assert again.json()["version"] == current["version"] and again.json()["upgrade_job"] is None
    assert ClusterConfigVersion.objects.filter(cluster=cluster).count() == before


def test_a_browser_posted_config_is_stored_with_unix_line_endings(cluster, client, admin_user):
    client.force_login(admin_user)
    text = GOOD.replace("max-pods: \"250\"", "max-pods: \"110\"").replace("\n", "\r\n")
    response = client.post(f"/admin/clusters/cluster/{cluster.pk}/config/", {"yaml": text, "comment": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    latest = Cluster.objects.get(pk=cluster.pk).config
    assert "\r" not in latest.source and latest.source.startswith("kubernetes_version: v1.15.11\n")
