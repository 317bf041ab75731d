"""Conformance: the official Python client (kubernetes 37.x) against the simulator."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import urllib3
from ksim_helpers import wait_until
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubesim import Fleet, start_fleet


def test_list_nodes_deserialises_full_node_info(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("rke1"))
    nodes = v1.list_node()
    assert len(nodes.items) == 5
    info = nodes.items[0].status.node_info
    assert info.kubelet_version == "v1.15.11" and info.container_runtime_version.startswith("docker://")
    assert int(nodes.metadata.resource_version) > 0
    roles = {n.metadata.name: [k for k in n.metadata.labels if k.startswith("node-role.kubernetes.io/")] for n in nodes.items}
    assert roles["rke1-etcd-1"] == ["node-role.kubernetes.io/etcd"]
    etcd = next(n for n in nodes.items if n.metadata.name == "rke1-etcd-1")
    assert [(t.key, t.effect) for t in etcd.spec.taints] == [("node-role.kubernetes.io/etcd", "NoExecute")]


def test_version_endpoint_per_cluster(fleet: Fleet, kube_client: Any) -> None:
    assert client.VersionApi(kube_client("rke1")).get_code().git_version == "v1.15.11"
    assert client.VersionApi(kube_client("k3s1")).get_code().git_version == "v1.17.4+k3s1"


def test_discovery_follows_the_cluster_version(fleet: Fleet, kube_client: Any) -> None:
    old = kube_client("rke1")
    new = kube_client("new1")
    groups = {g.name: [v.version for v in g.versions] for g in client.ApisApi(old).get_api_versions().groups}
    assert groups["policy"] == ["v1beta1"] and groups["apps"] == ["v1"]
    assert groups["apiextensions.k8s.io"] == ["v1beta1"]  # apiextensions/v1 arrived in 1.16
    new_groups = {g.name: [v.version for v in g.versions] for g in client.ApisApi(new).get_api_versions().groups}
    assert new_groups["policy"] == ["v1"]
    core = client.CoreV1Api(old).get_api_resources()
    by_name = {r.name: r for r in core.resources}
    assert by_name["pods"].short_names == ["po"] and by_name["pods"].namespaced
    assert set(by_name["pods"].verbs) >= {"create", "get", "list", "watch", "patch", "update", "delete", "deletecollection"}
    ev = by_name["pods/eviction"]
    assert (ev.group, ev.version, ev.kind) == ("policy", "v1beta1", "Eviction")
    new_ev = {r.name: r for r in client.CoreV1Api(new).get_api_resources().resources}["pods/eviction"]
    assert new_ev.version == "v1"
    psp = [r.name for r in client.PolicyV1Api(new).get_api_resources().resources]
    assert "podsecuritypolicies" not in psp and "poddisruptionbudgets" in psp


def test_watch_resumes_from_a_resource_version(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("rke1"))
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    v1.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}})
    v1.delete_namespaced_config_map("a", "default")
    events = []
    for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].data))
        if len(events) == 3:
            break
    assert events == [("ADDED", "a", {"k": "1"}), ("MODIFIED", "a", {"k": "2"}), ("DELETED", "a", {"k": "2"})]


def test_watch_streams_live_events_and_filters_by_label(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("rke1"))
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def run() -> None:
        for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, label_selector="team=a",
                           timeout_seconds=10):
            seen.append((ev["type"], ev["object"].metadata.name))
            if len(seen) == 2:
                w.stop()

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "other"}})
    v1.create_namespaced_config_map("default", {"metadata": {"name": "mine", "labels": {"team": "a"}}})
    v1.patch_namespaced_config_map("mine", "default", {"metadata": {"labels": {"team": "b"}}})
    t.join(10)
    assert seen == [("ADDED", "mine"), ("DELETED", "mine")]  # leaving the selector looks like a delete


def test_watch_from_a_compacted_revision_is_gone() -> None:
    sim = start_fleet({"clusters": [{"name": "c", "kind": "imported", "version": "v1.18.6", "nodes": {"worker": 1}}]})
    try:
        sim.cluster("c").store.watch_cache_size = 5
        sim.cluster("c").store.reset_watch_cache()
        import yaml
        from kubernetes import config

        v1 = client.CoreV1Api(config.new_client_from_config_dict(yaml.safe_load(sim.kubeconfig("c"))))
        rv = v1.list_namespaced_config_map("default").metadata.resource_version
        for i in range(10):
            v1.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}"}})
        with pytest.raises(ApiException) as err:
            for _ in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2):
                pass
        assert err.value.status == 410
        assert "too old resource version" in str(err.value.reason)
    finally:
        sim.stop()


def test_each_patch_type(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("new1")
    apps = client.AppsV1Api(api)
    dep = {
        "metadata": {"name": "p", "labels": {"app": "p"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "p"}},
                 "template": {"metadata": {"labels": {"app": "p"}},
                              "spec": {"containers": [{"name": "a", "image": "nginx:1", "env": [{"name": "X", "value": "1"}]},
                                                      {"name": "b", "image": "busybox:1"}]}}},
    }
    apps.create_namespaced_deployment("default", dep)
    # strategic merge (the client's default for dicts): containers merge by name
    apps.patch_namespaced_deployment("p", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "image": "nginx:2"}]}}}})
    got = apps.read_namespaced_deployment("p", "default")
    assert [(c.name, c.image) for c in got.spec.template.spec.containers] == [("a", "nginx:2"), ("b", "busybox:1")]
    assert got.spec.template.spec.containers[0].env[0].name == "X"
    assert got.metadata.generation == 2
    # strategic merge $patch: delete removes one element by key
    apps.patch_namespaced_deployment("p", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "b", "$patch": "delete"}]}}}})
    assert [c.name for c in apps.read_namespaced_deployment("p", "default").spec.template.spec.containers] == ["a"]
    # JSON patch (a list body)
    apps.patch_namespaced_deployment("p", "default", [{"op": "replace", "path": "/spec/replicas", "value": 2},
                                                      {"op": "add", "path": "/metadata/labels/tier", "value": "web"}])
    got = apps.read_namespaced_deployment("p", "default")
    assert got.spec.replicas == 2 and got.metadata.labels["tier"] == "web"
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment("p", "default", [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert err.value.status == 422
    # JSON merge patch: lists replace, null deletes
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "m", "labels": {"a": "1", "b": "2"}}})
    api.set_default_header("Content-Type", "application/merge-patch+json")
    try:
        v1.patch_namespaced_config_map("m", "default", {"metadata": {"labels": {"a": None, "c": "3"}}})
    finally:
        api.default_headers.pop("Content-Type")
    assert v1.read_namespaced_config_map("m", "default").metadata.labels == {"b": "2", "c": "3"}


def test_stale_update_conflicts(fleet: Fleet, kube_client: Any) -> None:
    apps = client.AppsV1Api(kube_client("rke1"))
    first = apps.read_namespaced_deployment("web", "default")
    second = apps.read_namespaced_deployment("web", "default")
    first.spec.replicas = 4
    apps.replace_namespaced_deployment("web", "default", first)
    second.spec.replicas = 5
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment("web", "default", second)
    assert err.value.status == 409
    body = json.loads(err.value.body)
    assert body["reason"] == "Conflict" and body["kind"] == "Status"
    assert body["message"] == ('Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
                               "please apply your changes to the latest version and try again")
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


def test_status_errors(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("rke1")
    v1 = client.CoreV1Api(api)
    with pytest.raises(ApiException) as err:
        v1.read_namespaced_pod("nope", "default")
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"], body["message"]) == (404, "NotFound", 'pods "nope" not found')
    with pytest.raises(ApiException) as err:
        v1.create_namespaced_config_map("default", {"metadata": {"name": "kube-root"}})
        v1.create_namespaced_config_map("default", {"metadata": {"name": "kube-root"}})
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"
    bad = {"metadata": {"name": "bad"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
                                                 "template": {"metadata": {"labels": {"app": "y"}},
                                                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    with pytest.raises(ApiException) as err:
        client.AppsV1Api(api).create_namespaced_deployment("default", bad)
    body = json.loads(err.value.body)
    assert err.value.status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    with pytest.raises(ApiException) as err:
        v1.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert err.value.status == 400


def test_selectors_and_pagination(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("rke1"))
    on_node = v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=rke1-worker-1,status.phase=Running")
    assert on_node.items and all(p.spec.node_name == "rke1-worker-1" for p in on_node.items)
    web = v1.list_namespaced_pod("default", label_selector="app in (web),!nothere")
    assert len(web.items) == 3
    page1 = v1.list_pod_for_all_namespaces(limit=4)
    assert len(page1.items) == 4 and page1.metadata._continue and page1.metadata.remaining_item_count > 0
    page2 = v1.list_pod_for_all_namespaces(limit=100, _continue=page1.metadata._continue)
    names = [p.metadata.name for p in page1.items + page2.items]
    assert len(names) == len(set(names)) == len(v1.list_pod_for_all_namespaces().items)


def test_eviction_respects_pod_disruption_budget(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("rke1"))
    pods = v1.list_namespaced_pod("default", label_selector="app=web").items
    assert len(pods) == 3
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pods[0].metadata.name, namespace="default"))
    v1.create_namespaced_pod_eviction(pods[0].metadata.name, "default", body)  # 3 healthy, 2 required: allowed
    with pytest.raises(ApiException) as err:
        name = pods[1].metadata.name
        v1.create_namespaced_pod_eviction(name, "default", client.V1Eviction(metadata=client.V1ObjectMeta(name=name)))
    assert err.value.status == 429
    status = json.loads(err.value.body)
    assert status["reason"] == "TooManyRequests"
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    assert "needs 2 healthy pods" in status["details"]["causes"][0]["message"]
    # the ReplicaSet replaces the evicted pod; then the budget allows one disruption again
    wait_until(lambda: len([p for p in v1.list_namespaced_pod("default", label_selector="app=web").items
                            if p.status.phase == "Running" and not p.metadata.deletion_timestamp]) == 3)


def test_post_without_content_type(fleet: Fleet) -> None:
    token = fleet.cluster("rke1").token
    http = urllib3.PoolManager(ca_certs=None, cert_reqs="CERT_NONE")
    urllib3.disable_warnings()
    r = http.request("POST", fleet.server_url("rke1") + "/api/v1/namespaces/default/configmaps",
                     body=json.dumps({"metadata": {"name": "noct"}}).encode(),
                     headers={"Authorization": f"Bearer {token}"})
    assert r.status == 201 and json.loads(r.data)["metadata"]["name"] == "noct"


def test_custom_objects_api_on_plans(fleet: Fleet, kube_client: Any) -> None:
    co = client.CustomObjectsApi(kube_client("k3s1"))
    plan = {"apiVersion": "upgrade.cattle.io/v1", "kind": "Plan", "metadata": {"name": "noop"},
            "spec": {"concurrency": 1, "nodeSelector": {"matchLabels": {"nothing": "here"}},
                     "serviceAccountName": "system-upgrade", "upgrade": {"image": "rancher/k3s-upgrade"},
                     "version": "v1.17.4+k3s1"}}
    co.create_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", plan)
    got = wait_until(lambda: (co.get_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", "noop")
                              .get("status") or {}).get("latestHash") and
                     co.get_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", "noop"))
    assert got["status"]["latestVersion"] == "v1.17.4-k3s1"  # SUC replaces + with -
    conds = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conds["LatestResolved"] == "True" and conds["Complete"] == "True"
    listed = co.list_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["noop"]
    co.patch_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", "noop",
                                      {"spec": {"concurrency": 2}})
    assert co.get_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", "noop")["spec"]["concurrency"] == 2


def test_scale_subresource_and_delete_collection(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("rke1")
    apps = client.AppsV1Api(api)
    scale = apps.read_namespaced_deployment_scale("web", "default")
    assert scale.spec.replicas == 3 and scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 1}})
    v1 = client.CoreV1Api(api)
    wait_until(lambda: len([p for p in v1.list_namespaced_pod("default", label_selector="app=web").items]) == 1)
    for i in range(3):
        v1.create_namespaced_config_map("default", {"metadata": {"name": f"dc{i}", "labels": {"dc": "y"}}})
    v1.delete_collection_namespaced_config_map("default", label_selector="dc=y")
    assert v1.list_namespaced_config_map("default", label_selector="dc=y").items == []


def test_component_statuses(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("rke1"))
    cs = {c.metadata.name: c.conditions[0].status for c in v1.list_component_status().items}
    assert cs == {"controller-manager": "True", "etcd-0": "True", "scheduler": "True"}
    http = urllib3.PoolManager(cert_reqs="CERT_NONE")
    urllib3.disable_warnings()
    r = http.request("POST", fleet.server_url("rke1") + "/api/v1/componentstatuses", body=b'{"metadata":{"name":"x"}}',
                     headers={"Authorization": f"Bearer {fleet.cluster('rke1').token}"})
    assert r.status == 405 and json.loads(r.data)["reason"] == "MethodNotAllowed"
