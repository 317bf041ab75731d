"""metrics.k8s.io (`kubectl top`), `kubectl logs -f` streaming, and the ReplicaSet scale-down ranking."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FAST
from ksim_helpers import Kubectl, wait_until
from kubernetes import client, config

from kubesim import Fleet, start_fleet
from kubesim.controllers.deployments import _delete_rank
from kubesim.metrics import container_usage
from kubesim.util import parse_quantity

WEB = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "default"},
       "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [
                    {"name": "api", "image": "nginx:1.17.9",
                     "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}}}]}}}}
FLEET: dict[str, Any] = {
    "defaults": {"timings": FAST},
    "clusters": [
        {"name": "k3s", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 2}},
        {"name": "rke", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2},
         "metrics_server": True, "workloads": [{"manifest": WEB}]},
        {"name": "bare", "kind": "imported", "version": "v1.27.3", "nodes": {"controlplane": 1, "worker": 2},
         "workloads": [{"deployment": {"name": "web", "replicas": 3}}]},
    ],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Fleet]:
    f = start_fleet(FLEET)
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture(scope="module")
def kubeconfigs(sim: Fleet) -> Iterator[dict[str, Path]]:
    with tempfile.TemporaryDirectory() as d:
        yield sim.write_kubeconfigs(d)


def _api(sim: Fleet, name: str) -> Any:
    return config.new_client_from_config_dict(yaml.safe_load(sim.kubeconfig(name)))


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()[1:]]


# ---------------------------------------------------------------------- metrics.k8s.io
def test_kubectl_top_nodes_and_pods(sim: Fleet, kubeconfigs: dict[str, Path], kubectl_binary: str) -> None:
    k3s = Kubectl(kubectl_binary, kubeconfigs["k3s"])
    nodes = _rows(k3s.out("top", "nodes"))
    assert sorted(r[0] for r in nodes) == ["k3s-agent-1", "k3s-agent-2", "k3s-server-1"]
    assert all(r[1].endswith("m") and r[3].endswith("Mi") for r in nodes)
    pods = _rows(k3s.out("top", "pods", "-A"))
    assert {r[0] for r in pods} == {"kube-system", "system-upgrade"}
    assert any(r[1].startswith("metrics-server-") for r in pods)

    rke = Kubectl(kubectl_binary, kubeconfigs["rke"])
    api_pods = {r[0]: r for r in _rows(rke.out("top", "pods", "-l", "app=api"))}
    assert len(api_pods) == 2
    for row in api_pods.values():  # 30-90 % of the 200m / 256Mi requests
        assert 60 <= int(row[1].rstrip("m")) <= 180 and 128 <= int(row[2].rstrip("Mi")) <= 231
    assert len(_rows(rke.out("top", "nodes"))) == 4

    bare = Kubectl(kubectl_binary, kubeconfigs["bare"])
    for args in (("top", "nodes"), ("top", "pods", "-A")):
        proc = bare.run(*args, check=False)
        assert proc.returncode != 0 and "Metrics API not available" in proc.stderr


def _node_cpu(co: Any) -> dict[str, float]:
    got = co.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    return {i["metadata"]["name"]: parse_quantity(i["usage"]["cpu"]) for i in got["items"]}


def test_metrics_follow_the_load(sim: Fleet) -> None:
    api = _api(sim, "rke")
    co, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    pods = co.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods", label_selector="app=api")
    assert pods["kind"] == "PodMetricsList" and len(pods["items"]) == 2
    one = co.get_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods",
                                          pods["items"][0]["metadata"]["name"])
    assert one["kind"] == "PodMetrics" and one["containers"][0]["name"] == "api"
    # a node's usage is its pods' plus the system's share
    v1 = client.CoreV1Api(api)
    on_node: dict[str, float] = {}
    for p in v1.list_pod_for_all_namespaces().items:
        if p.status.phase == "Running":
            for c in p.spec.containers:
                cpu, _ = container_usage(p.metadata.uid, c.to_dict() | {"resources": {"requests": (c.resources.requests or {})}})
                on_node[p.spec.node_name] = on_node.get(p.spec.node_name, 0.0) + cpu
    before = _node_cpu(co)
    for node, cpu in before.items():
        assert 0.05 <= cpu - on_node.get(node, 0.0) <= 0.0701, node
    apps.patch_namespaced_deployment_scale("api", "default", {"spec": {"replicas": 8}})
    wait_until(lambda: len(co.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods",
                                                            label_selector="app=api")["items"]) == 8, timeout=20)
    after = _node_cpu(co)
    assert sum(after.values()) - sum(before.values()) >= 6 * 0.2 * 0.3 - 1e-6
    # a node whose kubelet is down cannot be scraped
    sim.set_node_up("rke", "rke-worker-1", False)
    try:
        assert "rke-worker-1" not in _node_cpu(co)
    finally:
        sim.set_node_up("rke", "rke-worker-1", True)
        apps.patch_namespaced_deployment_scale("api", "default", {"spec": {"replicas": 2}})


def test_no_metrics_server_no_metrics_api(sim: Fleet) -> None:
    api = _api(sim, "bare")
    groups = [g.name for g in client.ApisApi(api).get_api_versions().groups]
    assert "metrics.k8s.io" not in groups
    with pytest.raises(client.ApiException) as e:
        client.CustomObjectsApi(api).list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert e.value.status == 404
    assert "metrics.k8s.io" in [g.name for g in client.ApisApi(_api(sim, "k3s")).get_api_versions().groups]


# ---------------------------------------------------------------------- kubectl logs -f
def _handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request" in t.name)


def test_kubectl_logs_follow_streams_until_the_pod_ends_or_the_client_leaves(
        sim: Fleet, kubeconfigs: dict[str, Path], kubectl_binary: str) -> None:
    c = sim.clusters["bare"]
    v1 = client.CoreV1Api(_api(sim, "bare"))
    pod = v1.list_namespaced_pod("default", label_selector="app=web").items[0]
    node = c.nodes[pod.spec.node_name]
    base = _handler_threads()
    cmd = [kubectl_binary, "--kubeconfig", str(kubeconfigs["bare"]), "logs", "-f", pod.metadata.name]
    # the client leaves: the server stops (no thread left behind), without having to write anything
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert "simulated container" in proc.stdout.readline()  # type: ignore[union-attr]
        node.logs.append(pod.metadata.uid, "web", "first streamed line")
        assert proc.stdout.readline() == "first streamed line\n"  # type: ignore[union-attr]
        assert proc.poll() is None
        assert _handler_threads() > base
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: _handler_threads() <= base, timeout=5)
    # the pod ends: kubectl gets the last lines and exits 0
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "first streamed line\n"  # type: ignore[union-attr]
        node.logs.append(pod.metadata.uid, "web", "second line")
        time.sleep(0.3)
        v1.delete_namespaced_pod(pod.metadata.name, "default")
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and out == "second line\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_until(lambda: _handler_threads() <= base, timeout=5)
    # without -f the log is answered at once
    kc = Kubectl(kubectl_binary, kubeconfigs["bare"])
    other = v1.list_namespaced_pod("default", label_selector="app=web").items[0].metadata.name
    assert "simulated container" in kc.out("logs", other, timeout=10)


# ---------------------------------------------------------------------- ReplicaSet scale-down ranking
def _pod(name: str, node: str | None = "n1", phase: str = "Running", ready: bool = True, created: str = "2024-01-01T00:00:00Z",
         ready_at: str = "2024-01-01T00:00:10Z", restarts: int = 0, cost: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if cost is not None:
        meta["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(cost)}
    return {"metadata": meta, "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}],
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": ready_at}]}}


def test_delete_rank_matches_the_replicaset_controller() -> None:
    def first(*pods: dict[str, Any], ranks: dict[str, int] | None = None) -> str:
        return min(pods, key=lambda p: _delete_rank(p, (ranks or {}).get(p["metadata"]["name"], 0)))["metadata"]["name"]

    assert first(_pod("assigned"), _pod("unassigned", node=None, phase="Pending", ready=False)) == "unassigned"
    assert first(_pod("running"), _pod("pending", phase="Pending", ready=False)) == "pending"
    assert first(_pod("running"), _pod("unknown", phase="Unknown")) == "unknown"
    assert first(_pod("ready"), _pod("not-ready", ready=False)) == "not-ready"
    assert first(_pod("cheap", cost=-5), _pod("dear", cost=100), _pod("plain")) == "cheap"
    assert first(_pod("alone"), _pod("crowded"), ranks={"alone": 1, "crowded": 3}) == "crowded"
    assert first(_pod("long-ready", ready_at="2024-01-01T00:00:10Z"),
                 _pod("just-ready", ready_at="2024-01-01T01:00:00Z")) == "just-ready"
    assert first(_pod("steady"), _pod("crashy", restarts=4)) == "crashy"
    assert first(_pod("old", created="2024-01-01T00:00:00Z"), _pod("young", created="2024-01-02T00:00:00Z")) == "young"
    # earlier keys win over later ones
    assert first(_pod("young-ready", created="2024-01-02T00:00:00Z"), _pod("old-not-ready", ready=False)) == "old-not-ready"
    assert first(_pod("crashy-cost", restarts=9, cost=5), _pod("young", created="2024-01-02T00:00:00Z")) == "young"


def test_kubectl_scale_down_deletes_not_ready_and_youngest_pods_first(
        sim: Fleet, kubeconfigs: dict[str, Path], kubectl_binary: str) -> None:
    api = _api(sim, "k3s")
    v1, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    name = f"rank-{kubectl_binary[-4:].replace('.', '')}"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    apps.create_namespaced_deployment("default", dep)

    def ready_pods() -> list[Any]:
        items = [p for p in v1.list_namespaced_pod("default", label_selector=f"app={name}").items
                 if not p.metadata.deletion_timestamp]
        return items if all(p.status.phase == "Running" for p in items) else []

    old = wait_until(lambda: len(ready_pods()) == 3 and ready_pods(), timeout=20)
    old_names = sorted(p.metadata.name for p in old)
    time.sleep(1.1)  # creationTimestamps have one-second resolution
    apps.patch_namespaced_deployment_scale(name, "default", {"spec": {"replicas": 5}})
    young = wait_until(lambda: len(ready_pods()) == 5 and ready_pods(), timeout=20)
    young_names = sorted(p.metadata.name for p in young if p.metadata.name not in old_names)
    assert len(young_names) == 2
    # one of the old pods fails its readiness probe
    sick = v1.read_namespaced_pod_status(old_names[0], "default")
    for cond in sick.status.conditions:
        if cond.type in ("Ready", "ContainersReady"):
            cond.status = "False"
    v1.replace_namespaced_pod_status(old_names[0], "default", sick)

    Kubectl(kubectl_binary, Path(kubeconfigs["k3s"])).run("scale", f"deployment/{name}", "--replicas=2")
    wait_until(lambda: len(ready_pods()) == 2, timeout=20)
    kept = sorted(p.metadata.name for p in ready_pods())
    assert kept == old_names[1:], (kept, old_names, young_names)
    apps.delete_namespaced_deployment(name, "default")
