"""Zero downtime, measured: ready replicas sampled through a rolling and a parallel upgrade (issue 5, item 7)."""
from __future__ import annotations

import pytest

from clusters import config, inventory
from clusters.models import Cluster, NodeTransition, NodeUpgrade, Upgrade
from clusters.upgrades.testing import ReadySampler, zero_downtime_fleet
from portal.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def zdt(admin_user):
    from kubesim import start_fleet

    sim = start_fleet(zero_downtime_fleet("zdt"))
    cluster = inventory.import_cluster(name="zdt", kubeconfig=sim.kubeconfig("zdt"), user=admin_user)
    yield sim, cluster
    sim.stop()


def _upgrade(cluster, user, **strategy):
    doc = config.current_document(cluster)
    doc["kubernetes_version"] = "v1.16.8"
    doc["upgrade_strategy"].update(strategy)
    _, job = config.apply(cluster, doc, user=user)
    assert job is not None and job.kind == "clusters.upgrade"
    return job


def test_rolling_upgrade_never_drops_below_min_available(zdt, admin_user, run_jobs):
    sim, cluster = zdt
    job = _upgrade(cluster, admin_user, mode="rolling", drain=True, node_upgrade_timeout=30)
    assert Cluster.objects.get(pk=cluster.pk).state == Cluster.State.UPGRADING
    sampler = ReadySampler(sim.kubeconfig("zdt"))
    sampler.start()
    try:
        run_jobs()
    finally:
        sampler.stop()
    job = Job.objects.get(pk=job.pk)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert len(sampler.samples) > 100 and sampler.errors == 0
    assert sampler.minimum >= 2, f"ready replicas dropped to {sampler.minimum}"

    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == Upgrade.State.SUCCEEDED and upgrade.mode == "rolling"
    rows = list(upgrade.nodes.order_by("batch"))
    assert [r.role for r in rows] == ["etcd"] * 3 + ["controlplane"] * 3 + ["worker"] * 3
    assert [r.batch for r in rows] == list(range(9))  # one node at a time with these settings
    walk = ["cordoned", "draining", "drained", "upgrading", "upgraded", "active"]
    for row in rows:
        assert list(row.transitions.values_list("to_state", flat=True)) == walk, row.node_name
    info = sim.info("zdt")
    assert {n["version"] for n in info["nodes"]} == {"v1.16.8"}
    cluster.refresh_from_db()
    assert (cluster.state, cluster.kubernetes_version) == (Cluster.State.ACTIVE, "v1.16.8")
    assert not any(n.unschedulable for n in cluster.nodes.all())
    # Never two nodes out of service at once: each node's upgrade ends before the next one starts.
    spans = sorted((t.node_upgrade.started_at, t.node_upgrade.finished_at)
                   for t in NodeTransition.objects.filter(node_upgrade__upgrade=upgrade, to_state="active"))
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_parallel_upgrade_drops_below_min_available(zdt, admin_user, run_jobs):
    sim, cluster = zdt
    job = _upgrade(cluster, admin_user, mode="parallel", node_upgrade_timeout=30)
    sampler = ReadySampler(sim.kubeconfig("zdt"))
    sampler.start()
    try:
        run_jobs()
    finally:
        sampler.stop()
    assert Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED
    assert sampler.minimum < 2, "parallel mode was expected to take the app below minAvailable"
    upgrade = Upgrade.objects.get(job=job)
    rows = list(upgrade.nodes.all())
    assert {r.role: r.batch for r in rows} == {"etcd": 0, "controlplane": 1, "worker": 2}
    for row in rows:
        assert list(row.transitions.values_list("to_state", flat=True)) == ["upgrading", "upgraded", "active"]
    assert NodeUpgrade.objects.filter(upgrade=upgrade).exclude(state="active").count() == 0
    assert sampler.samples[-1][1] == 3  # all replicas back once the nodes are
