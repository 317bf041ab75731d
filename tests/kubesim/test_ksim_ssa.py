"""Server-side apply: managedFields per manager and operation, ownership by the schema,
removal of dropped fields, 409 conflicts naming the other managers, force, and the
migration from client-side `kubectl apply`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ksim_helpers import Kubectl
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import Fleet

APPLY = "application/apply-patch+yaml"

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa
  labels: {app: ssa, tier: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: ssa}
  template:
    metadata:
      labels: {app: ssa}
    spec:
      containers:
      - name: app
        image: nginx:1.25
        ports:
        - containerPort: 80
        env:
        - {name: MODE, value: blue}
"""


def _kc(fleet: Fleet, name: str, binary: str, tmp_path: Path) -> Kubectl:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(fleet.kubeconfig(name))
    return Kubectl(binary, cfg)


def _managed(obj: Any, api: Any = None) -> dict[tuple[str, str], dict[str, Any]]:
    entries = obj["metadata"].get("managedFields") if isinstance(obj, dict) else \
        api.sanitize_for_serialization(obj.metadata.managed_fields)
    return {(e["manager"], e["operation"]): e for e in entries or []}


def test_managed_fields_shape_after_create_update_apply(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("new1")
    v1, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    # create by the official client: manager from the User-Agent, operation Update, "." on new maps
    cm = v1.create_namespaced_config_map("default", {"metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "1"}})
    (entry,) = api.sanitize_for_serialization(cm.metadata.managed_fields)
    assert entry["manager"] == "OpenAPI-Generator" and entry["operation"] == "Update" and entry["apiVersion"] == "v1"
    assert entry["fieldsType"] == "FieldsV1" and entry["time"]
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}}
    # finalizers are a set list: v: elements
    cm = v1.patch_namespaced_config_map("c", "default", {"metadata": {"finalizers": ["example.com/x"]}}, field_manager="fin")
    assert _managed(cm, api)[("fin", "Update")]["fieldsV1"] == \
        {"f:metadata": {"f:finalizers": {".": {}, 'v:"example.com/x"': {}}}}
    v1.patch_namespaced_config_map("c", "default", {"metadata": {"finalizers": None}}, field_manager="fin")
    # apply: only the applied fields, list items by their merge keys (with the defaulted protocol)
    dep = yaml.safe_load(DEPLOYMENT)
    got = apps.patch_namespaced_deployment("ssa", "default", dep, field_manager="alice", _content_type=APPLY)
    m = _managed(got, api)
    assert list(m) == [("alice", "Apply")]
    fields = m[("alice", "Apply")]["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}, "f:tier": {}}}
    assert fields["f:spec"]["f:replicas"] == {} and fields["f:spec"]["f:selector"] == {}  # LabelSelector is atomic
    container = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert container == {".": {}, "f:env": {'k:{"name":"MODE"}': {".": {}, "f:name": {}, "f:value": {}}},
                         "f:image": {}, "f:name": {},
                         "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}
    assert got.spec.progress_deadline_seconds == 600  # defaults applied, but not owned by the applier
    # an ordinary patch: an Update entry for that manager, which takes the field from the applier
    got = apps.patch_namespaced_deployment("ssa", "default", {"spec": {"replicas": 3}}, field_manager="bob")
    m = _managed(got, api)
    assert m[("bob", "Update")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert m[("bob", "Update")]["apiVersion"] == "apps/v1"
    assert "f:replicas" not in m[("alice", "Apply")]["fieldsV1"]["f:spec"]
    # a PUT without managedFields keeps them; the manager comes from the User-Agent
    body = api.sanitize_for_serialization(apps.read_namespaced_deployment("ssa", "default"))
    body["metadata"].pop("managedFields")
    body["metadata"].pop("resourceVersion")
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.26"
    got = apps.replace_namespaced_deployment("ssa", "default", body)
    m = _managed(got, api)
    assert set(m) == {("alice", "Apply"), ("bob", "Update"), ("OpenAPI-Generator", "Update")}
    assert m[("OpenAPI-Generator", "Update")]["fieldsV1"] == \
        {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"app"}': {"f:image": {}}}}}}}
    # an apply without fieldManager is refused like the real server
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("ssa", "default", dep, _content_type=APPLY)
    assert e.value.status == 422 and "fieldManager: Required value: is required for apply patch" in e.value.body


def test_a_dropped_field_is_removed_unless_another_manager_owns_it(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("new1")
    apps = client.AppsV1Api(api)
    dep = yaml.safe_load(DEPLOYMENT)
    apps.patch_namespaced_deployment("ssa", "default", dep, field_manager="alice", _content_type=APPLY)
    smaller = copy.deepcopy(dep)
    del smaller["metadata"]["labels"]["tier"]
    del smaller["spec"]["template"]["spec"]["containers"][0]["env"]
    got = apps.patch_namespaced_deployment("ssa", "default", smaller, field_manager="alice", _content_type=APPLY)
    assert got.metadata.labels == {"app": "ssa"} and got.spec.template.spec.containers[0].env is None
    # a label another manager also applied stays when alice drops it
    apps.patch_namespaced_deployment("ssa", "default", {"apiVersion": "apps/v1", "kind": "Deployment",
                                                        "metadata": {"name": "ssa", "labels": {"team": "x"}}},
                                     field_manager="carol", _content_type=APPLY)
    with_team = copy.deepcopy(smaller)
    with_team["metadata"]["labels"]["team"] = "x"
    apps.patch_namespaced_deployment("ssa", "default", with_team, field_manager="alice", _content_type=APPLY)
    got = apps.patch_namespaced_deployment("ssa", "default", smaller, field_manager="alice", _content_type=APPLY)
    assert got.metadata.labels == {"app": "ssa", "team": "x"}


def test_two_managers_conflict_and_force_takes_over(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("new1")
    apps = client.AppsV1Api(api)
    dep = yaml.safe_load(DEPLOYMENT)
    apps.patch_namespaced_deployment("ssa", "default", dep, field_manager="alice", _content_type=APPLY)
    # the same values: shared ownership, no conflict
    got = apps.patch_namespaced_deployment("ssa", "default", dep, field_manager="dave", _content_type=APPLY)
    assert {("alice", "Apply"), ("dave", "Apply")} <= set(_managed(got, api))
    other = copy.deepcopy(dep)
    other["spec"]["replicas"] = 5
    other["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    before = apps.read_namespaced_deployment("ssa", "default").spec
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("ssa", "default", other, field_manager="carol", _content_type=APPLY)
    assert e.value.status == 409
    status = json.loads(e.value.body)
    assert status["reason"] == "Conflict" and status["code"] == 409
    assert status["message"] == ('Apply failed with 4 conflicts: conflicts with "alice":\n'
                                 '- .spec.replicas\n- .spec.template.spec.containers[name="app"].image\n'
                                 'conflicts with "dave":\n'
                                 '- .spec.replicas\n- .spec.template.spec.containers[name="app"].image')
    causes = status["details"]["causes"]
    assert {"type": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".spec.replicas"} in causes
    assert apps.read_namespaced_deployment("ssa", "default").spec == before
    # one conflict with an Update manager names its apiVersion
    apps.patch_namespaced_deployment("ssa", "default", {"spec": {"paused": True}}, field_manager="kubectl-edit")
    paused = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"}, "spec": {"paused": False}}
    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment("ssa", "default", paused, field_manager="carol", _content_type=APPLY)
    assert json.loads(e.value.body)["message"] == \
        'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.paused'
    # force: carol takes the fields, the others lose them
    got = apps.patch_namespaced_deployment("ssa", "default", other, field_manager="carol", force=True, _content_type=APPLY)
    assert got.spec.replicas == 5 and got.spec.template.spec.containers[0].image == "nginx:1.27"
    m = _managed(got, api)
    assert "f:replicas" in m[("carol", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in m[("alice", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in m[("dave", "Apply")]["fieldsV1"]["f:spec"]


@pytest.mark.parametrize("first", ["server-side", "client-side"])
def test_kubectl_server_side_apply(fleet: Fleet, kubectl_binary: str, tmp_path: Path, first: str) -> None:
    k = _kc(fleet, "new1", kubectl_binary, tmp_path)
    manifest = tmp_path / "dep.yaml"
    manifest.write_text(DEPLOYMENT)
    if first == "client-side":
        assert "created" in k.out("apply", "-f", str(manifest))
        live = json.loads(k.out("get", "deployment", "ssa", "-o", "json", "--show-managed-fields"))
        assert ("kubectl-client-side-apply", "Update") in _managed(live)
    # (again) server-side: no spurious conflict with kubectl-client-side-apply
    out = k.out("apply", "--server-side", "-f", str(manifest))
    assert "deployment.apps/ssa serverside-applied" in out
    live = json.loads(k.out("get", "deployment", "ssa", "-o", "json", "--show-managed-fields"))
    m = _managed(live)
    assert m[("kubectl", "Apply")]["fieldsV1"]["f:spec"]["f:replicas"] == {}
    if first == "client-side":
        # kubectl's csaupgrade (or the server's last-applied upgrade) moved the ownership
        assert "f:spec" not in m.get(("kubectl-client-side-apply", "Update"), {}).get("fieldsV1", {})
    assert "serverside-applied" in k.out("apply", "--server-side", "-f", str(manifest))
    again = json.loads(k.out("get", "deployment", "ssa", "-o", "json", "--show-managed-fields"))
    assert again["metadata"]["generation"] == live["metadata"]["generation"] and again["spec"] == live["spec"]
    assert _managed(again)[("kubectl", "Apply")] == m[("kubectl", "Apply")]  # a no-op
    # a label dropped from the manifest goes
    manifest.write_text(DEPLOYMENT.replace(", tier: web", ""))
    k.out("apply", "--server-side", "-f", str(manifest))
    assert json.loads(k.out("get", "deployment", "ssa", "-o", "json", "--show-managed-fields"))["metadata"]["labels"] == {"app": "ssa"}
    # another manager changed replicas: conflict, then --force-conflicts takes it back
    k.out("patch", "deployment", "ssa", "--type=merge", "-p", '{"spec":{"replicas":4}}')
    manifest.write_text(DEPLOYMENT.replace(", tier: web", "").replace("replicas: 2", "replicas: 3"))
    proc = k.run("apply", "--server-side", "-f", str(manifest), check=False)
    assert proc.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl-patch" using apps/v1: .spec.replicas' in proc.stderr
    assert "serverside-applied" in k.out("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    live = json.loads(k.out("get", "deployment", "ssa", "-o", "json", "--show-managed-fields"))
    assert live["spec"]["replicas"] == 3
    assert "f:spec" not in _managed(live).get(("kubectl-patch", "Update"), {}).get("fieldsV1", {})
    # client-side apply keeps working afterwards
    manifest.write_text(DEPLOYMENT.replace("nginx:1.25", "nginx:1.26"))
    assert "configured" in k.out("apply", "-f", str(manifest))
    live = json.loads(k.out("get", "deployment", "ssa", "-o", "json", "--show-managed-fields"))
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
