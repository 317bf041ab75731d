"""Controllers, node upgrades, etcd snapshots and the control API, observed through the API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from ksim_helpers import wait_until
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import Fleet, SnapshotError


def _node(v1: Any, name: str) -> Any:
    return v1.read_node(name)


def _ready(node: Any) -> str:
    return next(c.status for c in node.status.conditions if c.type == "Ready")


def test_scheduler_keeps_pods_off_tainted_cordoned_and_not_ready_nodes(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("rke1")
    v1 = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    web = v1.list_namespaced_pod("default", label_selector="app=web").items
    assert sorted(p.spec.node_name for p in web) == ["rke1-worker-1", "rke1-worker-2", "rke1-worker-3"]
    v1.patch_node("rke1-worker-1", {"spec": {"unschedulable": True}})
    fleet.set_node_up("rke1", "rke1-worker-2", False)
    wait_until(lambda: _ready(_node(v1, "rke1-worker-2")) == "Unknown")
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 6}})
    wait_until(lambda: len([p for p in v1.list_namespaced_pod("default", label_selector="app=web").items
                            if p.spec.node_name]) >= 6)
    placed = [p.spec.node_name for p in v1.list_namespaced_pod("default", label_selector="app=web").items]
    new_nodes = set(placed) - {"rke1-worker-1", "rke1-worker-2"}
    assert new_nodes == {"rke1-worker-3"}  # etcd/controlplane taints are not tolerated by web pods


def test_rolling_update_replaces_replica_set(fleet: Fleet, kube_client: Any) -> None:
    apps = client.AppsV1Api(kube_client("rke1"))
    apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.19"}]}}}})
    def done() -> bool:
        d = apps.read_namespaced_deployment("web", "default")
        return (d.status.updated_replicas == 3 and d.status.available_replicas == 3 and d.status.replicas == 3
                and d.status.observed_generation == d.metadata.generation)
    wait_until(done)
    rss = apps.list_namespaced_replica_set("default").items
    web = [rs for rs in rss if rs.metadata.name.startswith("web-")]
    assert sorted(rs.spec.replicas for rs in web) == [0, 3]
    new = next(rs for rs in web if rs.spec.replicas == 3)
    assert new.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert new.spec.template.spec.containers[0].image == "nginx:1.19"
    d = apps.read_namespaced_deployment("web", "default")
    progressing = next(c for c in d.status.conditions if c.type == "Progressing")
    assert progressing.reason == "NewReplicaSetAvailable"


def test_lost_node_pods_are_replaced_elsewhere(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("rke1"))
    fleet.set_node_up("rke1", "rke1-worker-1", False)
    wait_until(lambda: _ready(_node(v1, "rke1-worker-1")) == "Unknown")
    taints = {(t.key, t.effect) for t in _node(v1, "rke1-worker-1").spec.taints}
    assert ("node.kubernetes.io/unreachable", "NoExecute") in taints

    def replaced() -> bool:
        pods = v1.list_namespaced_pod("default", label_selector="app=web").items
        live = [p for p in pods if not p.metadata.deletion_timestamp and p.status.phase == "Running"
                and p.spec.node_name != "rke1-worker-1"]
        return len(live) == 3

    wait_until(replaced, timeout=20)
    stuck = [p for p in v1.list_namespaced_pod("default", label_selector="app=web").items
             if p.spec.node_name == "rke1-worker-1"]
    assert stuck and all(p.metadata.deletion_timestamp for p in stuck)  # Terminating until the kubelet is back
    fleet.set_node_up("rke1", "rke1-worker-1", True)
    wait_until(lambda: _ready(_node(v1, "rke1-worker-1")) == "True" and not _node(v1, "rke1-worker-1").spec.taints)
    wait_until(lambda: not [p for p in v1.list_namespaced_pod("default", label_selector="app=web").items
                            if p.spec.node_name == "rke1-worker-1"])


SERVER_PLAN = {
    "apiVersion": "upgrade.cattle.io/v1", "kind": "Plan", "metadata": {"name": "server-plan", "namespace": "system-upgrade"},
    "spec": {"concurrency": 1, "cordon": True, "serviceAccountName": "system-upgrade",
             "nodeSelector": {"matchExpressions": [{"key": "node-role.kubernetes.io/master", "operator": "In", "values": ["true"]}]},
             "upgrade": {"image": "rancher/k3s-upgrade"}, "version": "v1.17.5+k3s1"},
}
AGENT_PLAN = {
    "apiVersion": "upgrade.cattle.io/v1", "kind": "Plan", "metadata": {"name": "agent-plan", "namespace": "system-upgrade"},
    "spec": {"concurrency": 1, "serviceAccountName": "system-upgrade",
             "nodeSelector": {"matchExpressions": [{"key": "node-role.kubernetes.io/master", "operator": "DoesNotExist"}]},
             "prepare": {"image": "rancher/k3s-upgrade", "args": ["prepare", "server-plan"]},
             "drain": {"force": True, "ignoreDaemonSets": True},
             "upgrade": {"image": "rancher/k3s-upgrade"}, "version": "v1.17.5+k3s1"},
}


def test_system_upgrade_controller_servers_then_agents(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("k3s1")
    v1 = client.CoreV1Api(api)
    co = client.CustomObjectsApi(api)
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", {
        "metadata": {"name": "app"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "a"}},
                                               "template": {"metadata": {"labels": {"app": "a"}},
                                                            "spec": {"containers": [{"name": "a", "image": "nginx"}]}}}})
    co.create_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", AGENT_PLAN)
    co.create_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", SERVER_PLAN)
    order: list[str] = []
    max_applying = 0
    h = None

    def finished() -> bool:
        nonlocal max_applying, h
        for plan in ("server-plan", "agent-plan"):
            p = co.get_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", plan)
            max_applying = max(max_applying, len((p.get("status") or {}).get("applying") or []))
            h = (p.get("status") or {}).get("latestHash") or h
        for n in v1.list_node().items:
            if n.status.node_info.kubelet_version == "v1.17.5+k3s1" and n.metadata.name not in order:
                order.append(n.metadata.name)
        return len(order) == 3

    wait_until(finished, timeout=30, interval=0.02)
    assert order[0] == "k3s1-server-1"  # agents wait in their prepare step for the server plan
    assert max_applying == 1  # concurrency 1
    for n in v1.list_node().items:
        plan = "server-plan" if "server" in n.metadata.name else "agent-plan"
        wait_until(lambda n=n, plan=plan: v1.read_node(n.metadata.name).metadata.labels.get(f"plan.upgrade.cattle.io/{plan}") == h)
        assert not v1.read_node(n.metadata.name).spec.unschedulable  # uncordoned after the job
    jobs = client.BatchV1Api(api).list_namespaced_job("system-upgrade").items
    assert {j.metadata.labels["upgrade.cattle.io/node"] for j in jobs} == {"k3s1-server-1", "k3s1-agent-1", "k3s1-agent-2"}
    agent_job = next(j for j in jobs if j.metadata.labels["upgrade.cattle.io/plan"] == "agent-plan")
    init = {c.name: c.args for c in agent_job.spec.template.spec.init_containers}
    assert init["prepare"] == ["prepare", "server-plan"]
    assert "--ignore-daemonsets" in init["drain"] and "--force" in init["drain"]
    assert agent_job.spec.template.spec.containers[0].image == "rancher/k3s-upgrade:v1.17.5-k3s1"
    assert client.VersionApi(api).get_code().git_version == "v1.17.5+k3s1"
    plan = co.get_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", "agent-plan")
    assert plan["status"]["latestVersion"] == "v1.17.5-k3s1" and "applying" not in plan["status"]  # SUC munges + to -
    assert {c["type"]: c["status"] for c in plan["status"]["conditions"]}["Complete"] == "True"


def test_etcd_snapshot_and_restore(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("rke1")
    v1 = client.CoreV1Api(api)
    v1.create_namespaced_config_map("default", {"metadata": {"name": "before"}, "data": {"v": "1"}})
    blob = fleet.snapshot("rke1")
    v1.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    v1.patch_namespaced_config_map("before", "default", {"data": {"v": "2"}})
    rev_before = fleet.cluster("rke1").store.rv
    # a corrupt blob is refused and nothing changes
    corrupt = bytearray(blob)
    corrupt[len(corrupt) // 2] ^= 0xFF
    with pytest.raises(SnapshotError):
        fleet.restore("rke1", bytes(corrupt))
    with pytest.raises(SnapshotError):
        fleet.restore("rke1", blob[:-10])
    assert v1.read_namespaced_config_map("after", "default")
    assert fleet.cluster("rke1").store.rv == rev_before
    out = fleet.restore("rke1", blob)
    assert out["objects"] > 0 and out["currentRevision"] > rev_before  # revisions only move forward
    names = [c.metadata.name for c in v1.list_namespaced_config_map("default").items]
    assert "before" in names and "after" not in names
    assert v1.read_namespaced_config_map("before", "default").data == {"v": "1"}
    # workloads converge again after the restore
    wait_until(lambda: len([p for p in v1.list_namespaced_pod("default", label_selector="app=web").items
                            if p.status.phase == "Running"]) == 3)


def test_etcd_endpoint_over_http(fleet: Fleet) -> None:
    http = urllib3.PoolManager(cert_reqs="CERT_NONE")
    urllib3.disable_warnings()
    token = fleet.cluster("new1").token
    url = fleet.etcd_url("new1") + "/v3/maintenance/snapshot"
    assert http.request("POST", url).status == 401
    r = http.request("POST", url, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200 and r.headers["Content-Type"] == "application/octet-stream"
    import hashlib

    assert hashlib.sha256(r.data).hexdigest() == r.headers["X-Etcd-Snapshot-Sha256"]
    bad = http.request("POST", fleet.etcd_url("new1") + "/v3/maintenance/restore", body=b"garbage",
                       headers={"Authorization": f"Bearer {token}"})
    assert bad.status == 400 and "bad magic" in json.loads(bad.data)["error"]
    ok = http.request("POST", fleet.etcd_url("new1") + "/v3/maintenance/restore", body=r.data,
                      headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200 and json.loads(ok.data)["cluster"] == "new1"


def test_offline_cluster_and_token_rotation(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("new1"))
    fleet.set_online("new1", False)
    with pytest.raises(ApiException) as err:
        v1.list_node()
    assert err.value.status == 503
    fleet.set_online("new1", False, mode="refuse")
    api = kube_client("new1")
    api.configuration.retries = 0
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.CoreV1Api(api).list_node(_request_timeout=3)
    fleet.set_online("new1", True)
    assert len(v1.list_node().items) == 3
    new = fleet.rotate_token("new1")
    with pytest.raises(ApiException) as err:
        v1.list_node()
    assert err.value.status == 401
    assert yaml.safe_load(fleet.kubeconfig("new1"))["users"][0]["user"]["token"] == new
    assert len(client.CoreV1Api(kube_client("new1")).list_node().items) == 3


def test_control_api_over_http(fleet: Fleet) -> None:
    http = urllib3.PoolManager(cert_reqs="CERT_NONE")
    urllib3.disable_warnings()
    base = fleet.base_url + "/_sim/clusters"
    listed = json.loads(http.request("GET", base).data)
    assert {c["name"] for c in listed["clusters"]} == {"rke1", "k3s1", "new1"}
    r = http.request("POST", f"{base}/new1/offline", body=b'{"mode": "503"}')
    assert r.status == 200 and json.loads(r.data)["online"] is False
    http.request("POST", f"{base}/new1/online")
    r = http.request("POST", f"{base}/rke1/nodes/rke1-worker-1/fail-upgrade", body=b'{"fail": true}')
    node = next(n for n in json.loads(r.data)["nodes"] if n["name"] == "rke1-worker-1")
    assert node["failUpgrade"] is True
    token = json.loads(http.request("POST", f"{base}/new1/token").data)["token"]
    assert fleet.cluster("new1").token == token
    kubeconfig = yaml.safe_load(http.request("GET", f"{base}/new1/kubeconfig").data)
    assert kubeconfig["users"][0]["user"]["token"] == token
    history = json.loads(http.request("GET", f"{base}/new1/history").data)["history"]
    assert any(h["type"] == "token" for h in history)
    spec = {"name": "added", "kind": "k3s", "version": "v1.18.2+k3s1", "nodes": {"server": 1}}
    r = http.request("POST", base, body=json.dumps(spec).encode())
    assert r.status == 201 and "added" in fleet.clusters


def test_cli_serve_writes_kubeconfigs(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "kubesim", "serve", "--fleet", str(root / "fleets" / "demo.yaml"),
                             "--port", "0", "--kubeconfig-dir", str(tmp_path)],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "3 cluster(s) serving at https://127.0.0.1:" in first
        wait_until(lambda: (tmp_path / "demo-k3s.yaml").exists())
        from kubernetes import config

        for name, version in (("demo-rke", "v1.15.11"), ("demo-k3s", "v1.17.4+k3s1"), ("demo-imported", "v1.18.6")):
            api = config.new_client_from_config_dict(yaml.safe_load((tmp_path / f"{name}.yaml").read_text()))
            assert client.VersionApi(api).get_code().git_version == version
        api = config.new_client_from_config_dict(yaml.safe_load((tmp_path / "demo-rke.yaml").read_text()))
        pods = client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=web").items
        assert len(pods) == 3
        pdb = client.CustomObjectsApi(api).get_namespaced_custom_object("policy", "v1beta1", "default",
                                                                         "poddisruptionbudgets", "web")
        assert pdb["spec"]["minAvailable"] == 2 and pdb["status"]["podDisruptionsAllowed"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def test_suc_drain_waits_for_the_disruption_budget(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("k3s1")
    v1 = client.CoreV1Api(api)
    co = client.CustomObjectsApi(api)
    client.AppsV1Api(api).create_namespaced_deployment("default", {
        "metadata": {"name": "db"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                                              "template": {"metadata": {"labels": {"app": "db"}},
                                                           "spec": {"containers": [{"name": "db", "image": "postgres"}]}}}})
    pdb = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}}
    co.create_namespaced_custom_object("policy", "v1beta1", "default", "poddisruptionbudgets", pdb)
    wait_until(lambda: len([p for p in v1.list_namespaced_pod("default", label_selector="app=db").items
                            if p.status.phase == "Running"]) == 2)
    plan = json.loads(json.dumps(AGENT_PLAN))
    plan["spec"].pop("prepare")
    co.create_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans", plan)
    history = fleet.cluster("k3s1").history
    wait_until(lambda: any("refused" in h["message"] for h in history))
    time.sleep(0.5)
    applying = co.get_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans",
                                               "agent-plan")["status"]["applying"]
    assert len(applying) == 1
    assert v1.read_node(applying[0]).spec.unschedulable  # cordoned, waiting on the budget
    assert all(n.status.node_info.kubelet_version == "v1.17.4+k3s1" for n in v1.list_node().items)
    co.patch_namespaced_custom_object("policy", "v1beta1", "default", "poddisruptionbudgets", "db",
                                      {"spec": {"minAvailable": 1}})
    wait_until(lambda: all(n.status.node_info.kubelet_version == "v1.17.5+k3s1"
                           for n in v1.list_node().items if "agent" in n.metadata.name), timeout=30)


def test_offline_cluster_keeps_running(fleet: Fleet, kube_client: Any) -> None:
    v1 = client.CoreV1Api(kube_client("new1"))
    fleet.set_online("new1", False)
    time.sleep(1.5)  # longer than node_grace: heartbeats must go on behind the cut
    fleet.set_online("new1", True)
    assert all(_ready(n) == "True" for n in v1.list_node().items)
