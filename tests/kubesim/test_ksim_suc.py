"""The simulated system-upgrade-controller: Plans, Jobs, the images' effects, installing SUC."""

from __future__ import annotations

import base64
import hashlib
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

G, V, NS = "upgrade.cattle.io", "v1", "system-upgrade"

SUC_FLEET: dict[str, Any] = {
    "defaults": {"timings": FAST},
    "clusters": [
        {"name": "edge", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 4}},
        {"name": "plain", "kind": "rke", "version": "v1.15.11", "nodes": {"etcd": 1, "controlplane": 1, "worker": 2}},
        {"name": "flaky", "kind": "k3s", "version": "v1.17.4+k3s1",
         "nodes": [{"name": "flaky-server-1", "roles": ["server"]},
                   {"name": "flaky-agent-1", "roles": ["agent"], "fail_jobs": "k3s-upgrade: checksum mismatch"}]},
    ],
}
AGENTS = {"matchExpressions": [{"key": "node-role.kubernetes.io/master", "operator": "DoesNotExist"}]}
ALL_ROLES = [{"operator": "Exists"}]


@pytest.fixture
def sim() -> Iterator[Fleet]:
    f = start_fleet(SUC_FLEET)
    try:
        yield f
    finally:
        f.stop()


def _api(sim: Fleet, name: str) -> Any:
    return config.new_client_from_config_dict(yaml.safe_load(sim.kubeconfig(name)))


def _plan(name: str, selector: dict[str, Any], image: str, version: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{G}/{V}", "kind": "Plan", "metadata": {"name": name, "namespace": NS},
            "spec": {"concurrency": 1, "nodeSelector": selector, "serviceAccountName": "system-upgrade",
                     "upgrade": {"image": image}, "version": version, **spec}}


def _get_plan(co: Any, name: str) -> dict[str, Any]:
    return co.get_namespaced_custom_object(G, V, NS, "plans", name)


def _active_jobs(batch: Any) -> list[Any]:
    return [j for j in batch.list_namespaced_job(NS).items
            if not any(c.type in ("Complete", "Failed") and c.status == "True" for c in j.status.conditions or [])]


def _ready(node: Any) -> str:
    return next(c.status for c in node.status.conditions if c.type == "Ready")


def test_concurrency_two_over_four_nodes_and_status(sim: Fleet) -> None:
    api = _api(sim, "edge")
    v1, co, batch = client.CoreV1Api(api), client.CustomObjectsApi(api), client.BatchV1Api(api)
    co.create_namespaced_custom_object(G, V, NS, "plans", _plan(
        "k3s-agent", AGENTS, "rancher/k3s-upgrade", "v1.17.5+k3s1", concurrency=2, cordon=True))
    most_jobs = most_applying = 0
    not_ready_seen = False

    def done() -> bool:
        nonlocal most_jobs, most_applying, not_ready_seen
        most_jobs = max(most_jobs, len(_active_jobs(batch)))
        p = _get_plan(co, "k3s-agent")
        most_applying = max(most_applying, len((p.get("status") or {}).get("applying") or []))
        nodes = [n for n in v1.list_node().items if "agent" in n.metadata.name]
        not_ready_seen |= any(_ready(n) != "True" for n in nodes)
        h = (p.get("status") or {}).get("latestHash")
        return bool(h) and all((n.metadata.labels or {}).get("plan.upgrade.cattle.io/k3s-agent") == h for n in nodes)

    wait_until(done, timeout=30, interval=0.01)
    assert most_jobs <= 2 and most_applying == 2
    assert not_ready_seen  # each node is NotReady while k3s is replaced
    status = _get_plan(co, "k3s-agent")["status"]
    assert status["latestVersion"] == "v1.17.5-k3s1"
    assert status["latestHash"] == hashlib.sha224(b"v1.17.5-k3s1" + b"system-upgrade").hexdigest()
    assert "applying" not in status
    conds = {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}
    assert conds == {"Complete": ("True", "Complete"), "Validated": ("True", "PlanIsValid"),
                     "LatestResolved": ("True", "Version")}
    wait_until(lambda: all(not n.spec.unschedulable and _ready(n) == "True" for n in v1.list_node().items))
    for n in v1.list_node().items:
        want = "v1.17.4+k3s1" if "server" in n.metadata.name else "v1.17.5+k3s1"
        assert n.status.node_info.kubelet_version == want and n.status.node_info.kube_proxy_version == want
    jobs = batch.list_namespaced_job(NS).items
    assert len(jobs) == 4
    h = status["latestHash"]
    job = next(j for j in jobs if j.metadata.labels["upgrade.cattle.io/node"] == "edge-agent-1")
    assert job.metadata.name == f"apply-k3s-agent-on-edge-agent-1-with-{h}"[:57].rstrip("-.") + "-" + \
        hashlib.sha256(f"apply-k3s-agent-on-edge-agent-1-with-{h}".encode()).hexdigest()[:5]
    assert len(job.metadata.name) == 63
    assert job.metadata.labels["upgrade.cattle.io/plan"] == "k3s-agent"
    assert job.metadata.labels["plan.upgrade.cattle.io/k3s-agent"] == h
    assert job.spec.template.spec.containers[0].image == "rancher/k3s-upgrade:v1.17.5-k3s1"
    assert [c.name for c in job.spec.template.spec.init_containers] == ["cordon"]
    terms = job.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    assert terms.node_selector_terms[0].match_expressions[0].values == ["edge-agent-1"]
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)
    # the API server reports the new version once the (only) server runs it
    assert client.VersionApi(api).get_code().git_version == "v1.17.4+k3s1"
    co.create_namespaced_custom_object(G, V, NS, "plans", _plan(
        "k3s-server", {"matchLabels": {"node-role.kubernetes.io/master": "true"}}, "rancher/k3s-upgrade",
        "v1.17.5+k3s1", cordon=True))
    wait_until(lambda: client.VersionApi(api).get_code().git_version == "v1.17.5+k3s1", timeout=20)


def test_drain_prepare_and_secrets(sim: Fleet) -> None:
    api = _api(sim, "edge")
    v1, co, batch = client.CoreV1Api(api), client.CustomObjectsApi(api), client.BatchV1Api(api)
    client.AppsV1Api(api).create_namespaced_deployment("default", {
        "metadata": {"name": "db"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}},
                                              "template": {"metadata": {"labels": {"app": "db"}},
                                                           "spec": {"containers": [{"name": "db", "image": "postgres"}]}}}})
    co.create_namespaced_custom_object("policy", "v1beta1", "default", "poddisruptionbudgets", {
        "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}})
    wait_until(lambda: len([p for p in v1.list_namespaced_pod("default", label_selector="app=db").items
                            if p.status.phase == "Running"]) == 2)
    v1.create_namespaced_secret(NS, {"metadata": {"name": "node-env"},
                                     "data": {"TOKEN": base64.b64encode(b"one").decode()}})
    plan = _plan("k3s-agent", AGENTS, "rancher/k3s-upgrade", "v1.17.5+k3s1", concurrency=2,
                 prepare={"image": "busybox:1.36", "args": ["sh", "-c", "cat /run/system-upgrade/secrets/env/TOKEN"]},
                 secrets=[{"name": "node-env", "path": "env"}],
                 drain={"force": True, "ignoreDaemonSets": True, "deleteEmptydirData": True, "timeout": 60_000_000_000})
    co.create_namespaced_custom_object(G, V, NS, "plans", plan)
    ready_db = 2
    history = sim.cluster("edge").history

    def done(label_hash: str | None = None) -> bool:
        nonlocal ready_db
        ready_db = min(ready_db, len([p for p in v1.list_namespaced_pod("default", label_selector="app=db").items
                                      if p.status.phase == "Running" and not p.metadata.deletion_timestamp]))
        p = _get_plan(co, "k3s-agent")
        h = label_hash or (p.get("status") or {}).get("latestHash")
        return bool(h) and all((n.metadata.labels or {}).get("plan.upgrade.cattle.io/k3s-agent") == h
                               for n in v1.list_node().items if "agent" in n.metadata.name)

    wait_until(done, timeout=30, interval=0.02)
    assert ready_db >= 1  # the budget held: never both db pods gone at once
    assert any("drain edge-agent" in h["message"] and "evicted pod default/db-" in h["message"] for h in history)
    first = _get_plan(co, "k3s-agent")["status"]["latestHash"]
    assert first != hashlib.sha224(b"v1.17.5-k3s1" + b"system-upgrade").hexdigest()  # the secret is in the hash
    job = batch.list_namespaced_job(NS).items[0]
    pod_spec = job.spec.template.spec
    assert [c.name for c in pod_spec.init_containers] == ["prepare", "drain"]
    prepare, drain = pod_spec.init_containers
    assert prepare.image == "busybox:1.36" and prepare.args[0] == "sh"
    assert drain.args[:4] == ["drain", job.metadata.labels["upgrade.cattle.io/node"], "--pod-selector",
                              "!upgrade.cattle.io/controller"]
    assert {"--ignore-daemonsets", "--delete-emptydir-data", "--force"} <= set(drain.args)
    assert drain.args[drain.args.index("--timeout") + 1] == "1m0s"
    vol = next(v for v in pod_spec.volumes if v.name == "secret-node-env")
    assert vol.secret.secret_name == "node-env"
    for ctr in [*pod_spec.init_containers, *pod_spec.containers]:
        mount = next(m for m in ctr.volume_mounts if m.name == "secret-node-env")
        assert mount.mount_path == "/run/system-upgrade/secrets/env" and mount.read_only
    env = {e.name: e.value for e in pod_spec.containers[0].env}
    assert env["SYSTEM_UPGRADE_PLAN_LATEST_HASH"] == first and env["SYSTEM_UPGRADE_PLAN_LATEST_VERSION"] == "v1.17.5-k3s1"
    assert all(not n.spec.unschedulable for n in v1.list_node().items)  # SUC cordoned (drain), SUC uncordoned
    # new secret content -> new hash -> every node runs the plan again
    v1.patch_namespaced_secret("node-env", NS, {"data": {"TOKEN": base64.b64encode(b"two").decode()}})
    wait_until(lambda: _get_plan(co, "k3s-agent")["status"]["latestHash"] != first, timeout=30)
    wait_until(done, timeout=30, interval=0.02)
    assert len(batch.list_namespaced_job(NS).items) == 8


def test_plan_waits_until_suc_is_installed(sim: Fleet) -> None:
    """rke cluster without SUC: the portal's install path (CRD, RBAC, Deployment) through the API."""
    api = _api(sim, "plain")
    v1, co, apps = client.CoreV1Api(api), client.CustomObjectsApi(api), client.AppsV1Api(api)
    assert sim.cluster("plain").store.get("customresourcedefinitions.apiextensions.k8s.io", "", "plans.upgrade.cattle.io") is None
    v1.create_namespace({"metadata": {"name": NS}})
    v1.create_namespaced_service_account(NS, {"metadata": {"name": "system-upgrade"}})
    client.RbacAuthorizationV1Api(api).create_cluster_role_binding({
        "metadata": {"name": "system-upgrade"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "system-upgrade", "namespace": NS}]})
    crd = {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "plans.upgrade.cattle.io"},
           "spec": {"group": G, "scope": "Namespaced", "version": "v1",
                    "names": {"kind": "Plan", "plural": "plans", "singular": "plan"}, "subresources": {"status": {}}}}
    co.create_cluster_custom_object("apiextensions.k8s.io", "v1beta1", "customresourcedefinitions", crd)
    wait_until(lambda: _served(co))
    tolerate = [{"key": "node-role.kubernetes.io/controlplane", "operator": "Exists"},
                {"key": "node-role.kubernetes.io/etcd", "operator": "Exists"}]
    co.create_namespaced_custom_object(G, V, NS, "plans", _plan(
        "cp", {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["plain-controlplane-1"]}]},
        "rancher/rke2-upgrade", "v1.16.8+rke2r1", tolerations=tolerate))
    time.sleep(1.0)
    assert not _get_plan(co, "cp").get("status")  # nobody acts on it yet
    assert not client.BatchV1Api(api).list_namespaced_job(NS).items
    labels = {"upgrade.cattle.io/controller": "system-upgrade-controller"}
    apps.create_namespaced_deployment(NS, {
        "metadata": {"name": "system-upgrade-controller"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "serviceAccountName": "system-upgrade",
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                         {"matchExpressions": [{"key": "node-role.kubernetes.io/controlplane", "operator": "Exists"}]}]}}},
                     "tolerations": [{"key": "node-role.kubernetes.io/controlplane", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "containers": [{"name": "controller", "image": "rancher/system-upgrade-controller:v0.14.0"}]}}}})
    wait_until(lambda: ((apps.read_namespaced_deployment("system-upgrade-controller", NS).status or
                         client.V1DeploymentStatus()).ready_replicas or 0) >= 1)
    wait_until(lambda: (_get_plan(co, "cp").get("status") or {}).get("latestHash"))
    node = wait_until(lambda: (lambda n: n if (n.metadata.labels or {}).get("plan.upgrade.cattle.io/cp") else None)(
        v1.read_node("plain-controlplane-1")), timeout=20)
    assert node.status.node_info.kubelet_version == "v1.16.8"  # rke clusters report plain versions
    assert client.VersionApi(api).get_code().git_version == "v1.16.8"
    assert v1.read_node("plain-worker-1").status.node_info.kubelet_version == "v1.15.11"


def _served(co: Any) -> bool:
    try:
        return any(r.name == "plans" for r in co.get_api_resources(G, V).resources)
    except client.exceptions.ApiException:
        return False


def test_node_config_sets_max_pods_and_the_scheduler_honours_it(sim: Fleet, kubectl_binary: str,
                                                                tmp_path: Path) -> None:
    api = _api(sim, "edge")
    v1, co = client.CoreV1Api(api), client.CustomObjectsApi(api)
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(sim.kubeconfig("edge"))
    k = Kubectl(kubectl_binary, cfg)
    assert k.out("get", "node", "edge-agent-1", "-o", "jsonpath={.status.capacity.pods}") == "110"
    one = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["edge-agent-1"]}]}
    co.create_namespaced_custom_object(G, V, NS, "plans", _plan(
        "kubelet-250", one, "corral/node-config:v0.1.0", "v0.1.0", upgrade={
            "image": "corral/node-config:v0.1.0", "args": ["--kubelet-arg=max-pods=250"]}))
    wait_until(lambda: (v1.read_node("edge-agent-1").metadata.labels or {}).get("plan.upgrade.cattle.io/kubelet-250"))
    assert k.out("get", "node", "edge-agent-1", "-o", "jsonpath={.status.capacity.pods}") == "250"
    assert k.out("get", "node", "edge-agent-1", "-o", "jsonpath={.status.allocatable.pods}") == "250"
    assert k.out("get", "node", "edge-agent-2", "-o", "jsonpath={.status.capacity.pods}") == "110"
    assert any("kubelet restarting" in h["message"] for h in sim.history("edge"))
    # max-pods 4 everywhere: the scheduler leaves what does not fit Pending ("Too many pods")
    co.create_namespaced_custom_object(G, V, NS, "plans", _plan(
        "kubelet-4", {}, "corral/node-config", "v0.1.0", concurrency=5, tolerations=ALL_ROLES,
        upgrade={"image": "corral/node-config", "args": ["--kubelet-arg=max-pods=4"]}))
    wait_until(lambda: all((n.metadata.labels or {}).get("plan.upgrade.cattle.io/kubelet-4")
                           and n.status.allocatable["pods"] == "4" and _ready(n) == "True"
                           for n in v1.list_node().items), timeout=20)
    job = client.BatchV1Api(api).list_namespaced_job(NS, label_selector="upgrade.cattle.io/plan=kubelet-4").items[0]
    assert job.spec.template.spec.containers[0].image == "corral/node-config:v0.1.0"  # tag = version
    used = sum(1 for p in v1.list_pod_for_all_namespaces().items
               if p.spec.node_name and p.status.phase not in ("Succeeded", "Failed"))
    replicas = 5 * 4 - used + 2
    client.AppsV1Api(api).create_namespaced_deployment("default", {
        "metadata": {"name": "many"}, "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "many"}},
                                                "template": {"metadata": {"labels": {"app": "many"}},
                                                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})

    def pending() -> list[Any]:
        pods = v1.list_namespaced_pod("default", label_selector="app=many").items
        return [p for p in pods if not p.spec.node_name] if len(pods) == replicas and \
            len([p for p in pods if p.spec.node_name]) == replicas - 2 else []

    stuck = wait_until(pending, timeout=20)
    assert len(stuck) == 2
    time.sleep(0.3)
    for p in v1.list_namespaced_pod("default", label_selector="app=many").items:
        if not p.spec.node_name:
            cond = next(c for c in p.status.conditions if c.type == "PodScheduled")
            assert cond.status == "False" and cond.reason == "Unschedulable" and "Too many pods" in cond.message
    per_node: dict[str, int] = {}
    for p in v1.list_pod_for_all_namespaces().items:
        if p.spec.node_name and p.status.phase not in ("Succeeded", "Failed"):
            per_node[p.spec.node_name] = per_node.get(p.spec.node_name, 0) + 1
    assert max(per_node.values()) <= 4
    events = v1.list_namespaced_event("default").items
    assert any(e.reason == "FailedScheduling" and "Too many pods" in e.message for e in events)


def test_failing_jobs_leave_nodes_unlabelled(sim: Fleet) -> None:
    api = _api(sim, "edge")
    v1, co, batch = client.CoreV1Api(api), client.CustomObjectsApi(api), client.BatchV1Api(api)
    one = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["edge-agent-3"]}]}
    co.create_namespaced_custom_object(G, V, NS, "plans", _plan("mystery", one, "example.com/mystery", "v1.0.0"))
    job = wait_until(lambda: next((j for j in batch.list_namespaced_job(NS).items
                                   if any(c.type == "Failed" and c.status == "True" for c in j.status.conditions or [])),
                                  None), timeout=20)
    assert job.status.failed == 3  # SUC's default backoffLimit 2: three attempts
    pods = v1.list_namespaced_pod(NS, label_selector=f"job-name={job.metadata.name}").items
    assert pods and all(p.status.phase == "Failed" for p in pods)
    term = pods[0].status.container_statuses[0].state.terminated
    assert term.exit_code == 1 and "does not simulate image 'example.com/mystery:v1.0.0'" in term.message
    wait_until(lambda: {c["type"]: c for c in _get_plan(co, "mystery")["status"]["conditions"]}["Complete"]
               .get("reason") == "JobFailed")
    status = _get_plan(co, "mystery")["status"]
    complete = {c["type"]: c for c in status["conditions"]}["Complete"]
    assert complete["status"] == "False" and "BackoffLimitExceeded" in complete["message"]
    assert status["applying"] == ["edge-agent-3"]  # stuck on the node, as SUC does
    assert "plan.upgrade.cattle.io/mystery" not in (v1.read_node("edge-agent-3").metadata.labels or {})
    # the fleet file's injected failure: the upgrade script exits 1, the node keeps its version
    api2 = _api(sim, "flaky")
    v1b, cob, batchb = client.CoreV1Api(api2), client.CustomObjectsApi(api2), client.BatchV1Api(api2)
    cob.create_namespaced_custom_object(G, V, NS, "plans", _plan(
        "k3s-agent", AGENTS, "rancher/k3s-upgrade", "v1.17.5+k3s1", cordon=True))
    failed = wait_until(lambda: next((j for j in batchb.list_namespaced_job(NS).items
                                      if any(c.type == "Failed" and c.status == "True"
                                             for c in j.status.conditions or [])), None), timeout=20)
    pod = v1b.list_namespaced_pod(NS, label_selector=f"job-name={failed.metadata.name}").items[0]
    assert pod.status.container_statuses[0].state.terminated.message == "k3s-upgrade: checksum mismatch"
    node = v1b.read_node("flaky-agent-1")
    assert node.status.node_info.kubelet_version == "v1.17.4+k3s1" and _ready(node) == "True"
    assert "plan.upgrade.cattle.io/k3s-agent" not in (node.metadata.labels or {})
    assert node.spec.unschedulable  # SUC uncordons only after success, as the real one

