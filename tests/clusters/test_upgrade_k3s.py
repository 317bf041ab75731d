"""k3s upgrades: the job writes system-upgrade-controller Plans and follows the nodes to the target version."""
from __future__ import annotations

import pytest

from clusters import config, inventory, upgrades
from clusters.models import Cluster, Upgrade
from clusters.upgrades.testing import client_for, k3s_cluster
from portal.models import Job

pytestmark = pytest.mark.django_db

NAME = "k3"
TARGET = "v1.17.5+k3s1"


@pytest.fixture
def k3(admin_user):
    from kubesim import start_fleet

    sim = start_fleet({"clusters": [k3s_cluster(NAME, servers=1, agents=3)]})
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    yield sim, cluster
    sim.stop()


def plans(sim) -> dict[str, dict]:
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    try:
        items = client.CustomObjectsApi(api).list_namespaced_custom_object(
            "upgrade.cattle.io", "v1", "system-upgrade", "plans")["items"]
    finally:
        api.close()
    return {p["metadata"]["name"]: p for p in items}


def start(cluster, user, **k3s) -> Job:
    doc = config.current_document(cluster)
    doc["kubernetes_version"] = TARGET
    doc["k3s_upgrade_strategy"].update(k3s)
    doc["upgrade_strategy"]["node_drain_input"].update(timeout=30, force=True)
    return config.apply(cluster, doc, user=user)[1]


def test_k3s_upgrade_writes_plans_and_nodes_reach_the_version(k3, admin_user, run_jobs):
    sim, cluster = k3
    assert cluster.kind == "k3s"
    job = start(cluster, admin_user, server_concurrency=1, worker_concurrency=2, drain_server_nodes=False,
                drain_worker_nodes=True)
    run_jobs()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error

    written = plans(sim)
    server, agent = written["k3s-server"]["spec"], written["k3s-agent"]["spec"]
    assert server["version"] == agent["version"] == TARGET
    assert (server["concurrency"], agent["concurrency"]) == (1, 2)
    assert server["cordon"] is True and "drain" not in server
    assert agent["drain"]["force"] is True and agent["drain"]["ignoreDaemonSets"] is True
    assert agent["drain"]["timeout"] == 30 * 10**9
    assert agent["prepare"] == {"image": "rancher/k3s-upgrade", "args": ["prepare", "k3s-server"]}
    assert server["upgrade"] == {"image": "rancher/k3s-upgrade"} and server["serviceAccountName"] == "system-upgrade"
    assert written["k3s-server"]["status"]["latestVersion"] == TARGET.replace("+", "-")  # SUC reports the image tag

    assert {n["version"] for n in sim.info(NAME)["nodes"]} == {TARGET}
    upgrade = Upgrade.objects.get(job=job)
    walks = {r.node_name: list(r.transitions.values_list("to_state", flat=True)) for r in upgrade.nodes.all()}
    assert walks[f"{NAME}-server-1"] == ["cordoned", "upgrading", "upgraded", "active"]
    for i in (1, 2, 3):
        assert walks[f"{NAME}-agent-{i}"] == ["cordoned", "draining", "drained", "upgrading", "upgraded", "active"]
    server_done = upgrade.nodes.get(role="server").finished_at
    assert all(r.started_at >= server_done for r in upgrade.nodes.filter(role="agent"))  # servers first
    cluster.refresh_from_db()
    assert (cluster.state, cluster.kubernetes_version) == (Cluster.State.ACTIVE, TARGET)
    assert not any(n.unschedulable for n in cluster.nodes.all())


def test_k3s_node_that_does_not_come_back_pauses_then_resumes(k3, admin_user, run_jobs):
    sim, cluster = k3
    sim.fail_node_upgrade(NAME, f"{NAME}-agent-2")
    doc_job = start(cluster, admin_user, worker_concurrency=1)
    upgrade = Upgrade.objects.get(job=doc_job)
    Upgrade.objects.filter(pk=upgrade.pk).update(strategy={**upgrade.strategy, "node_upgrade_timeout": 1})
    run_jobs()
    upgrade.refresh_from_db()
    assert upgrade.state == Upgrade.State.PAUSED, upgrade.reason
    assert f"node {NAME}-agent-2 was not back Ready on {TARGET} within 1 s" in upgrade.reason
    assert plans(sim) == {}  # no node starts while paused
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    assert not any(n.spec.unschedulable for n in client.CoreV1Api(api).list_node().items)
    api.close()

    sim.fail_node_upgrade(NAME, f"{NAME}-agent-2", False)
    Upgrade.objects.filter(pk=upgrade.pk).update(strategy={**upgrade.strategy, "node_upgrade_timeout": 30})
    upgrades.resume_upgrade(upgrade, user=admin_user)
    run_jobs()
    upgrade.refresh_from_db()
    assert upgrade.state == Upgrade.State.SUCCEEDED, upgrade.reason
    assert {n["version"] for n in sim.info(NAME)["nodes"]} == {TARGET}
