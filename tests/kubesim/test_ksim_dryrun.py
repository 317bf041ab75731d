"""`dryRun=All` on every write verb: the answer is the would-be object, nothing is stored,
no watch event is sent and the store's revision does not move."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ksim_helpers import Kubectl, wait_until
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import Fleet
from kubesim.apiserver import Request

CONFIGMAP = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: demo}
data:
  mode: blue
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dry
  labels: {app: dry}
spec:
  replicas: 2
  selector:
    matchLabels: {app: dry}
  template:
    metadata:
      labels: {app: dry}
    spec:
      containers:
      - name: app
        image: nginx:1.25
"""


def _kc(fleet: Fleet, name: str, binary: str, tmp_path: Path) -> Kubectl:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(fleet.kubeconfig(name))
    return Kubectl(binary, cfg)


def _call(fleet: Fleet, cluster: str, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
          ctype: str = "application/json") -> tuple[int, Any, int, int]:
    """One request straight into the cluster's API server with the cluster lock held (so no
    controller writes in between): (status, body, store revision before, after)."""
    c = fleet.cluster(cluster)
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    with c.lock:
        before = c.store.rv
        resp = c.api.handle(Request(method, path, query or {}, {"content-type": ctype, "user-agent": "test/1.0"}, data))
        after = c.store.rv
    return resp.status, json.loads(resp.body) if resp.body else None, before, after


def _settled(fleet: Fleet, cluster: str, name: str) -> dict[str, Any]:
    c = fleet.cluster(cluster)

    def ok() -> dict[str, Any] | None:
        d = c.store.get("deployments.apps", "default", name) or {}
        st = d.get("status") or {}
        if st.get("observedGeneration") == d["metadata"].get("generation") and st.get("readyReplicas") == d["spec"]["replicas"] \
                and st.get("updatedReplicas") == d["spec"]["replicas"] and st.get("replicas") == d["spec"]["replicas"]:
            return d
        return None

    wait_until(ok, timeout=30)
    wait_until(lambda: c.store.get("deployments.apps", "default", name) == ok(), timeout=10)
    return c.store.get("deployments.apps", "default", name) or {}


def test_every_write_verb_is_dry(fleet: Fleet) -> None:
    base = "/api/v1/namespaces/default"
    dry = {"dryRun": "All"}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "1"}}
    # create: the would-be object (uid, creationTimestamp) without a resourceVersion
    code, out, b, a = _call(fleet, "new1", "POST", f"{base}/configmaps", cm, dry)
    assert code == 201 and out["metadata"]["uid"] and "resourceVersion" not in out["metadata"] and a == b
    assert fleet.cluster("new1").store.get("configmaps", "default", "c1") is None
    code, out, _, _ = _call(fleet, "new1", "POST", f"{base}/configmaps", cm)
    assert code == 201
    rv = out["metadata"]["resourceVersion"]
    stored = fleet.cluster("new1").store.get("configmaps", "default", "c1")
    # update, every patch type, delete: the would-be object at the unchanged resourceVersion
    changed = dict(cm, data={"a": "2"}, metadata={"name": "c1", "resourceVersion": rv})
    patches = [
        ("PUT", f"{base}/configmaps/c1", changed, "application/json"),
        ("PATCH", f"{base}/configmaps/c1", [{"op": "replace", "path": "/data/a", "value": "2"}], "application/json-patch+json"),
        ("PATCH", f"{base}/configmaps/c1", {"data": {"a": "2"}}, "application/merge-patch+json"),
        ("PATCH", f"{base}/configmaps/c1", {"data": {"a": "2"}}, "application/strategic-merge-patch+json"),
    ]
    for method, path, body, ctype in patches:
        code, out, b, a = _call(fleet, "new1", method, path, body, dry, ctype)
        assert code == 200, out
        assert out["data"] == {"a": "2"} and out["metadata"]["resourceVersion"] == rv and a == b, (ctype, out)
    code, out, b, a = _call(fleet, "new1", "PATCH", f"{base}/configmaps/c1",
                            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\ndata: {a: '2'}\n",
                            {"dryRun": "All", "fieldManager": "tester", "force": "true"}, "application/apply-patch+yaml")
    assert code == 200 and out["data"] == {"a": "2"} and out["metadata"]["resourceVersion"] == rv and a == b
    code, out, b, a = _call(fleet, "new1", "DELETE", f"{base}/configmaps/c1", None, dry)
    assert code == 200 and out["metadata"]["name"] == "c1" and a == b
    code, out, b, a = _call(fleet, "new1", "DELETE", f"{base}/configmaps/c1", {"kind": "DeleteOptions", "dryRun": ["All"]})
    assert code == 200 and a == b
    code, out, b, a = _call(fleet, "new1", "DELETE", f"{base}/configmaps", None, {"dryRun": "All", "labelSelector": ""})
    assert code == 200 and any(i["metadata"]["name"] == "c1" for i in out["items"]) and a == b
    assert fleet.cluster("new1").store.get("configmaps", "default", "c1") == stored
    # an unknown value: the real server's 422 on the request's options kind
    code, out, b, a = _call(fleet, "new1", "PATCH", f"{base}/configmaps/c1", {"data": {"a": "3"}}, {"dryRun": "Some"},
                            "application/merge-patch+json")
    assert code == 422 and out["reason"] == "Invalid" and a == b
    assert out["message"] == 'PatchOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Some"}: supported values: "All"'
    assert out["details"]["causes"][0]["field"] == "dryRun"


def test_dry_run_subresources_and_graceful_delete(fleet: Fleet) -> None:
    c = fleet.cluster("rke1")
    dep = _settled(fleet, "rke1", "web")
    apps = "/apis/apps/v1/namespaces/default/deployments/web"
    code, out, b, a = _call(fleet, "rke1", "PATCH", f"{apps}/scale", {"spec": {"replicas": 7}}, {"dryRun": "All"},
                            "application/merge-patch+json")
    assert code == 200 and out["spec"]["replicas"] == 7 and a == b
    code, out, b, a = _call(fleet, "rke1", "PUT", f"{apps}/status", dict(dep, status={"replicas": 99}), {"dryRun": "All"})
    assert code == 200 and out["status"] == {"replicas": 99} and a == b
    assert c.store.get("deployments.apps", "default", "web") == dep
    pod = next(p for p in c.store.objects("pods", "default") if p["metadata"]["name"].startswith("web-"))
    name = pod["metadata"]["name"]
    # a graceful pod delete answers with the deletionTimestamp it would set
    code, out, b, a = _call(fleet, "rke1", "DELETE", f"/api/v1/namespaces/default/pods/{name}", None, {"dryRun": "All"})
    assert code == 200 and out["metadata"].get("deletionTimestamp") and a == b
    # an eviction with deleteOptions.dryRun (kubectl drain --dry-run=server) leaves pod and PDB alone
    pdb = c.store.get("poddisruptionbudgets.policy", "default", "web")
    body = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"},
            "deleteOptions": {"dryRun": ["All"]}}
    code, out, b, a = _call(fleet, "rke1", "POST", f"/api/v1/namespaces/default/pods/{name}/eviction", body)
    assert code == 201 and a == b
    assert c.store.get("pods", "default", name) == c.store.get("pods", "default", name) and \
        not c.store.get("pods", "default", name)["metadata"].get("deletionTimestamp")
    assert c.store.get("poddisruptionbudgets.policy", "default", "web") == pdb


def test_dry_run_sends_no_watch_event(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("new1"))
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w"}, "data": {"a": "1"}})
    rv = v1.read_namespaced_config_map("w", "default").metadata.resource_version
    v1.patch_namespaced_config_map("w", "default", {"data": {"a": "dry"}}, dry_run="All")
    v1.create_namespaced_config_map("default", {"metadata": {"name": "w2"}}, dry_run="All")
    v1.delete_namespaced_config_map("w", "default", dry_run="All")
    v1.patch_namespaced_config_map("w", "default", {"data": {"a": "real"}})
    resp = v1.list_namespaced_config_map("default", watch=True, resource_version=rv, timeout_seconds=1,
                                         _preload_content=False)
    events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"], e["object"]["data"]) for e in events] == \
        [("MODIFIED", "w", {"a": "real"})]


def test_official_client_dry_runs(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("new1")
    apps = client.AppsV1Api(api)
    body = yaml.safe_load(DEPLOYMENT)
    got = apps.create_namespaced_deployment("default", body, dry_run="All")
    assert got.metadata.uid and got.metadata.resource_version is None and got.spec.strategy.type == "RollingUpdate"
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("dry", "default")
    assert e.value.status == 404
    apps.create_namespaced_deployment("default", body)
    live = _settled(fleet, "new1", "dry")
    rv = live["metadata"]["resourceVersion"]
    out = apps.patch_namespaced_deployment_scale("dry", "default", {"spec": {"replicas": 5}}, dry_run="All")
    assert out.spec.replicas == 5
    body["spec"]["replicas"] = 4
    out = apps.replace_namespaced_deployment("dry", "default", body, dry_run="All")
    assert out.spec.replicas == 4 and out.metadata.generation == live["metadata"]["generation"] + 1
    assert out.metadata.resource_version == rv
    out = apps.patch_namespaced_deployment("dry", "default", body, field_manager="me", dry_run="All", force=True,
                                           _content_type="application/apply-patch+yaml")
    assert out.spec.replicas == 4
    apps.delete_namespaced_deployment("dry", "default", dry_run="All")
    now = apps.read_namespaced_deployment("dry", "default")
    assert now.metadata.resource_version == rv and now.spec.replicas == 2


def test_kubectl_dry_runs_change_nothing(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    k = _kc(fleet, "new1", kubectl_binary, tmp_path)
    cm, dep = tmp_path / "cm.yaml", tmp_path / "dep.yaml"
    cm.write_text(CONFIGMAP)
    dep.write_text(DEPLOYMENT)
    # create dry runs store nothing
    assert "(server dry run)" in k.out("apply", "--dry-run=server", "-f", str(cm))
    assert k.run("get", "configmap", "settings", check=False).returncode != 0
    k.out("apply", "-f", str(cm))
    k.out("apply", "-f", str(dep))
    k.out("rollout", "status", "deployment/dry", "--timeout=30s")
    live_cm = json.loads(k.out("get", "configmap", "settings", "-o", "json"))
    live_dep = _settled(fleet, "new1", "dry")

    def unchanged() -> None:
        assert json.loads(k.out("get", "configmap", "settings", "-o", "json")) == live_cm
        assert fleet.cluster("new1").store.get("deployments.apps", "default", "dry") == live_dep

    # kubectl diff of a changed manifest prints the diff and changes nothing
    cm.write_text(CONFIGMAP.replace("blue", "green"))
    proc = k.run("diff", "-f", str(cm), check=False)
    assert proc.returncode == 1, proc.stderr  # 1: differences found
    assert "-  mode: blue" in proc.stdout and "+  mode: green" in proc.stdout
    unchanged()
    dep.write_text(DEPLOYMENT.replace("replicas: 2", "replicas: 3"))
    proc = k.run("diff", "-f", str(dep), check=False)
    assert proc.returncode == 1 and "+  replicas: 3" in proc.stdout
    unchanged()
    assert "configured (server dry run)" in k.out("apply", "--dry-run=server", "-f", str(cm))
    assert "serverside-applied (server dry run)" in k.out("apply", "--server-side", "--dry-run=server", "-f", str(cm))
    assert "scaled (server dry run)" in k.out("scale", "deployment/dry", "--replicas=5", "--dry-run=server")
    assert "labeled (server dry run)" in k.out("label", "configmap", "settings", "x=y", "--dry-run=server")
    assert "replaced (server dry run)" in k.out("replace", "--dry-run=server", "-f", str(cm))
    assert "deleted (server dry run)" in k.out("delete", "configmap", "settings", "--dry-run=server")
    assert "deleted (server dry run)" in k.out("delete", "-f", str(dep), "--dry-run=server")
    unchanged()
    out = yaml.safe_load(k.out("apply", "--dry-run=server", "-f", str(cm), "-o", "yaml"))
    assert out["data"] == {"mode": "green"} and out["metadata"]["resourceVersion"] == live_cm["metadata"]["resourceVersion"]
    unchanged()
