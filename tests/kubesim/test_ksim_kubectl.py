"""Conformance: the real kubectl (oldest and newest the SDK ships) against the simulator."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ksim_helpers import Kubectl, wait_until

from kubesim import Fleet

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  labels: {app: nginx}
spec:
  replicas: 2
  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"""

PLAN = """
apiVersion: upgrade.cattle.io/v1
kind: Plan
metadata:
  name: server-plan
  namespace: system-upgrade
spec:
  concurrency: 1
  cordon: true
  nodeSelector:
    matchExpressions:
    - {key: node-role.kubernetes.io/master, operator: In, values: ["true"]}
  serviceAccountName: system-upgrade
  upgrade:
    image: rancher/k3s-upgrade
  version: v1.17.4+k3s1
"""


def _kc(fleet: Fleet, name: str, binary: str, tmp_path: Path) -> Kubectl:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(fleet.kubeconfig(name))
    return Kubectl(binary, cfg)


def test_version_get_nodes_and_pods(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    k = _kc(fleet, "rke1", kubectl_binary, tmp_path)
    info = json.loads(k.out("version", "-o", "json"))
    assert info["serverVersion"]["gitVersion"] == "v1.15.11"
    assert info["serverVersion"]["minor"] == "15"
    nodes = k.out("get", "nodes", "-o", "wide")
    header = nodes.splitlines()[0].split()
    assert header[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert "INTERNAL-IP" in header and "CONTAINER-RUNTIME" in header
    assert "rke1-worker-1" in nodes and "Ready" in nodes and "v1.15.11" in nodes and "docker://19.3.5" in nodes
    pods = k.out("get", "pods", "-A", "-o", "wide")
    assert pods.splitlines()[0].split()[:3] == ["NAMESPACE", "NAME", "READY"]
    web = [line.split() for line in pods.splitlines() if line.startswith("default ") and " web-" in line]
    assert len(web) == 3
    assert all(row[3] == "Running" and row[2] == "1/1" for row in web)
    assert {row[7] for row in web} == {"rke1-worker-1", "rke1-worker-2", "rke1-worker-3"}  # spread by the scheduler


def test_describe_node(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    k = _kc(fleet, "rke1", kubectl_binary, tmp_path)
    out = k.out("describe", "node", "rke1-worker-1")
    assert "Name:               rke1-worker-1" in out
    assert "Roles:              worker" in out
    assert "Kubelet Version:            v1.15.11" in out
    assert "KubeletReady" in out
    assert "Non-terminated Pods:" in out and "web-" in out


@pytest.mark.parametrize("cluster", ["rke1", "new1"])  # eviction in policy/v1beta1 (1.15) and policy/v1 (1.27)
def test_cordon_drain_uncordon(fleet: Fleet, kubectl_binary: str, tmp_path: Path, cluster: str) -> None:
    k = _kc(fleet, cluster, kubectl_binary, tmp_path)
    node = f"{cluster}-worker-1"
    before = k.out("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", "-o", "name")
    assert "cordoned" in k.out("cordon", node)
    assert "Ready,SchedulingDisabled" in k.out("get", "node", node)
    out = k.run("drain", node, "--ignore-daemonsets", "--timeout=60s")
    assert "drained" in out.stdout
    evicted = [line.split("/", 1)[1] for line in before.split() if "node-exporter" not in line]
    assert evicted and all(f"pod/{name} evicted" in out.stdout + out.stderr for name in evicted)
    remaining = k.out("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", "-o", "name")
    assert not any(name in remaining for name in evicted)
    if cluster == "rke1":
        assert "node-exporter" in remaining  # DaemonSet pods stay
        c = fleet.cluster("rke1")
        wait_until(lambda: (c.store.get("deployments.apps", "default", "web") or {}).get("status", {}).get("readyReplicas") == 3)
    assert "uncordoned" in k.out("uncordon", node)
    assert "SchedulingDisabled" not in k.out("get", "node", node)


def test_drain_refused_by_pdb(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    k = _kc(fleet, "rke1", kubectl_binary, tmp_path)
    k.out("patch", "pdb", "web", "--type=merge", "-p", '{"spec":{"minAvailable":3}}')
    proc = k.run("drain", "rke1-worker-2", "--ignore-daemonsets", "--timeout=3s", check=False)
    assert proc.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget" in proc.stderr + proc.stdout
    assert "web-" in k.out("get", "pods", "--field-selector", "spec.nodeName=rke1-worker-2")


@pytest.mark.parametrize("cluster", ["rke1", "new1"])
def test_apply_scale_delete(fleet: Fleet, kubectl_binary: str, tmp_path: Path, cluster: str) -> None:
    k = _kc(fleet, cluster, kubectl_binary, tmp_path)
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(DEPLOYMENT)
    assert "deployment.apps/nginx created" in k.out("apply", "-f", str(manifest))
    assert "successfully rolled out" in k.out("rollout", "status", "deployment/nginx", "--timeout=30s")
    pods = k.out("get", "pods", "-l", "app=nginx")
    assert pods.count("Running") == 2 and pods.count("1/1") == 2
    assert "scaled" in k.out("scale", "deployment/nginx", "--replicas=4")
    wait_until(lambda: k.out("get", "pods", "-l", "app=nginx").count("1/1") == 4, timeout=30)
    # client-side apply of a changed template: a new ReplicaSet rolls out
    manifest.write_text(DEPLOYMENT.replace("nginx:1.25", "nginx:1.26"))
    assert "configured" in k.out("apply", "-f", str(manifest))
    k.out("rollout", "status", "deployment/nginx", "--timeout=30s")
    images = k.out("get", "pods", "-l", "app=nginx", "-o", "jsonpath={.items[*].spec.containers[0].image}").split()
    assert images and set(images) == {"nginx:1.26"}
    dep = yaml.safe_load(k.out("get", "deployment", "nginx", "-o", "yaml"))
    assert "kubectl.kubernetes.io/last-applied-configuration" in dep["metadata"]["annotations"]
    assert 'deployment.apps "nginx" deleted' in k.out("delete", "-f", str(manifest))
    wait_until(lambda: "nginx" not in k.out("get", "pods,rs", "-l", "app=nginx", "-o", "name"), timeout=30)


def test_get_custom_resource(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    k = _kc(fleet, "k3s1", kubectl_binary, tmp_path)
    assert "plans.upgrade.cattle.io" in k.out("get", "crd")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    assert "plan.upgrade.cattle.io/server-plan created" in k.out("apply", "-f", str(plan))
    table = k.out("get", "plans", "-n", "system-upgrade")
    assert table.splitlines()[0].split() == ["NAME", "IMAGE", "CHANNEL", "VERSION", "AGE"]
    assert "server-plan" in table and "rancher/k3s-upgrade" in table
    got = yaml.safe_load(k.out("get", "plan", "server-plan", "-n", "system-upgrade", "-o", "yaml"))
    assert got["spec"]["version"] == "v1.17.4+k3s1"
    wait_until(lambda: yaml.safe_load(k.out("get", "plan", "server-plan", "-n", "system-upgrade", "-o", "yaml"))
               .get("status", {}).get("latestVersion") == "v1.17.4-k3s1")  # SUC replaces + with -


def test_custom_resource_definition_roundtrip(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    k = _kc(fleet, "new1", kubectl_binary, tmp_path)
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                               "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]}]},
    }
    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd))
    k.out("apply", "-f", str(tmp_path / "crd.yaml"))
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 7}}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(widget))
    k.out("apply", "-f", str(tmp_path / "w.yaml"))
    out = k.out("get", "wd")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "AGE"]
    assert out.splitlines()[1].split()[:2] == ["w1", "7"]


def test_wrong_token_is_unauthorized(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    cfg = yaml.safe_load(fleet.kubeconfig("rke1"))
    cfg["users"][0]["user"]["token"] = "wrong"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = Kubectl(kubectl_binary, path).run("get", "nodes", check=False)
    assert proc.returncode != 0
    assert "Unauthorized" in proc.stderr or "provide credentials" in proc.stderr


def test_get_watch_streams_table_rows(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    k = _kc(fleet, "rke1", kubectl_binary, tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    proc = subprocess.Popen([kubectl_binary, "--kubeconfig", str(k.kubeconfig), "--cache-dir", str(cache),
                             "get", "configmaps", "-w", "--request-timeout=20s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        k.out("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: b\n")
        deadline = time.monotonic() + 15
        seen = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and "watched" not in seen:
            seen += proc.stdout.readline()
        assert "watched" in seen
        assert "NAME" in seen and "DATA" in seen
    finally:
        proc.kill()
        proc.wait()


def test_create_generators(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    """kubectl 1.33 sends these bodies as protobuf; 1.27 as JSON. Both must land the same."""
    k = _kc(fleet, "new1", kubectl_binary, tmp_path)
    k.out("create", "configmap", "gen-cm", "--from-literal=a=b")
    k.out("create", "secret", "generic", "gen-secret", "--from-literal=token=s3cr3t")
    k.out("create", "deployment", "gen-dep", "--image=nginx:1.25", "--port=80", "--replicas=2")
    k.out("run", "gen-pod", "--image=busybox:1.36", "--labels=run=gen", "--env=X=1")
    cm = json.loads(k.out("get", "configmap", "gen-cm", "-o", "json"))
    assert cm["data"] == {"a": "b"}
    secret = json.loads(k.out("get", "secret", "gen-secret", "-o", "json"))
    assert secret["data"] == {"token": "czNjcjN0"} and secret["type"] == "Opaque"
    dep = json.loads(k.out("get", "deployment", "gen-dep", "-o", "json"))
    assert dep["spec"]["replicas"] == 2
    ctr = dep["spec"]["template"]["spec"]["containers"][0]
    assert ctr["image"] == "nginx:1.25" and ctr["ports"][0]["containerPort"] == 80
    assert "successfully rolled out" in k.out("rollout", "status", "deployment/gen-dep", "--timeout=30s")
    pod = json.loads(k.out("get", "pod", "gen-pod", "-o", "json"))
    assert pod["metadata"]["labels"] == {"run": "gen"}
    assert pod["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}]
