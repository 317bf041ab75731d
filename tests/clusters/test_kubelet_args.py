"""An rke cluster is upgraded (rolling, drain, PodDisruptionBudget) and then gets max-pods 250, all through SUC Plans."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusters import config, inventory, upgrades
from clusters.models import Cluster, Upgrade
from clusters.upgrades.testing import ReadySampler, client_for, rke_cluster
from portal.models import Job

pytestmark = pytest.mark.django_db

NAME = "ka"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ka(admin_user):
    from kubesim import start_fleet

    sim = start_fleet({"clusters": [rke_cluster(NAME, {"etcd": 1, "controlplane": 1, "worker": 3}, replicas=3,
                                                min_available=2)]})
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    yield sim, cluster
    sim.stop()


def nodes(sim) -> list[dict]:
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    try:
        return api.sanitize_for_serialization(client.CoreV1Api(api).list_node().items)
    finally:
        api.close()


def plans(sim) -> list[str]:
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    try:
        return [p["metadata"]["name"] for p in client.CustomObjectsApi(api).list_namespaced_custom_object(
            "upgrade.cattle.io", "v1", "system-upgrade", "plans")["items"]]
    finally:
        api.close()


def walks(upgrade) -> dict[str, list[str]]:
    return {r.node_name: list(r.transitions.values_list("to_state", flat=True)) for r in upgrade.nodes.all()}


def test_upgrade_then_max_pods_through_plans_with_drain_and_a_pdb(ka, admin_user, run_jobs):
    sim, cluster = ka
    doc = config.current_document(cluster)
    doc["kubernetes_version"] = "v1.16.8"
    doc["upgrade_strategy"].update(drain=True, max_unavailable_worker="1")
    doc["upgrade_strategy"]["node_drain_input"].update(timeout=60)
    job = config.apply(cluster, doc, user=admin_user)[1]
    sampler = ReadySampler(sim.kubeconfig(NAME))
    sampler.start()
    run_jobs()
    sampler.stop()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    upgrade = Upgrade.objects.get(job=job)
    drained = ["cordoned", "draining", "drained", "upgrading", "upgraded", "active"]
    assert all(walk == drained for walk in walks(upgrade).values()), walks(upgrade)
    assert sampler.minimum >= 2  # the PodDisruptionBudget held throughout
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes(sim)} == {"v1.16.8"}
    assert not any(n["spec"].get("unschedulable") for n in nodes(sim))
    assert plans(sim) == []  # each batch's Plan went with its batch
    log = "\n".join(job.log_lines.values_list("message", flat=True))
    assert "installing it (rancher/system-upgrade-controller:" in log  # rke clusters come without SUC
    assert f"Plan system-upgrade/corral-{upgrade.pk}-k8s-b0: rancher/rke2-upgrade:v1.16.8" in log
    assert job.result["api_requests"] < 40 * len(walks(upgrade))

    # Now the kubelet arguments: same walk, node-config image.
    cluster.refresh_from_db()
    doc = config.current_document(cluster)
    doc["services"]["kubelet"]["extra_args"] = {"max-pods": 250}
    job = config.apply(cluster, doc, user=admin_user)[1]
    assert job.kind == "clusters.kubelet_args"
    rollout = Upgrade.objects.get(job=job)
    assert rollout.kind == Upgrade.Kind.KUBELET_ARGS and rollout.params == {"kubelet_args": {"max-pods": 250}}
    with pytest.raises(upgrades.UpgradeError, match="already running"):
        upgrades.start_kubelet_args(cluster, {"max-pods": 300}, user=admin_user)
    run_jobs()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert all(walk == drained for walk in walks(rollout).values()), walks(rollout)
    for node in nodes(sim):
        assert node["status"]["capacity"]["pods"] == "250", node["metadata"]["name"]
        assert node["status"]["allocatable"]["pods"] == "250"
        assert any(k.startswith(f"plan.upgrade.cattle.io/corral-{rollout.pk}-kubelet-b") for k in node["metadata"]["labels"])
        assert not any(k.startswith("nodeagent.corral.io/") for k in node["metadata"].get("annotations") or {})
    log = "\n".join(job.log_lines.values_list("message", flat=True))
    assert "corral/node-config:v0.1.0 --kubelet-arg=max-pods=250" in log
    assert plans(sim) == [] and not any(n["spec"].get("unschedulable") for n in nodes(sim))
    cluster.refresh_from_db()
    assert cluster.state == Cluster.State.ACTIVE


def test_kubelet_args_need_the_upgrade_permission_and_sane_flags(ka, admin_user, make_user):
    from clusters import schema
    from rbac.models import ClusterRoleBinding, RoleTemplate

    _, cluster = ka
    member = make_user("member")
    ClusterRoleBinding.objects.create(cluster=cluster, role=RoleTemplate.objects.get(name="cluster-member"),
                                      user=member)
    with pytest.raises(Exception):  # noqa: B017 - the permission layer's own error
        upgrades.start_kubelet_args(cluster, {"max-pods": 250}, user=member)
    doc = config.current_document(cluster)
    doc["services"]["kubelet"]["extra_args"] = {"max pods; rm -rf /": 1}
    with pytest.raises(schema.ConfigError, match="kubelet flag name"):
        config.apply(cluster, doc, user=admin_user)
    doc["services"]["kubelet"]["extra_args"] = {"max-pods": 250}
    doc["kubernetes_version"] = "v1.16.8"
    with pytest.raises(schema.ConfigError, match="two saves"):
        config.apply(cluster, doc, user=admin_user)
    assert not Upgrade.objects.exists() and cluster.config_versions.count() == 1


def test_no_annotation_protocol_left_in_product_code():
    found = subprocess.run(["grep", "-rlE", "nodeagent\\.corral\\.io|desired-version|corral-node-agent",
                            "clusters", "portal", "backups", "scans", "catalog", "rbac", "templates"],
                           cwd=ROOT, capture_output=True, text=True)
    assert [f for f in found.stdout.split() if "__pycache__" not in f] == []
