"""rke upgrades against the simulator: pause on a node that does not come back, resume, cancel, a killed run."""
from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from clusters import config, inventory, upgrades
from clusters.models import Cluster, NodeUpgrade, Upgrade
from clusters.upgrades.engine import Engine
from clusters.upgrades.testing import client_for, rke_cluster
from portal.jobs import reap_lost_jobs
from portal.models import AuditEvent, Job

pytestmark = pytest.mark.django_db

NAME = "rk"


@pytest.fixture
def rk(admin_user):
    from kubesim import start_fleet

    sim = start_fleet({"clusters": [rke_cluster(NAME, {"etcd": 1, "controlplane": 1, "worker": 2}, replicas=2,
                                                min_available=1)]})
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    yield sim, cluster
    sim.stop()


def start(cluster, user, **strategy) -> Job:
    doc = config.current_document(cluster)
    doc["kubernetes_version"] = "v1.16.8"
    doc["upgrade_strategy"].update(strategy)
    return config.apply(cluster, doc, user=user)[1]


def walk(upgrade, node) -> list[str]:
    return list(NodeUpgrade.objects.get(upgrade=upgrade, node_name=f"{NAME}-{node}")
                .transitions.values_list("to_state", flat=True))


def cordoned(sim) -> list[str]:
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    try:
        return [n.metadata.name for n in client.CoreV1Api(api).list_node().items if n.spec.unschedulable]
    finally:
        api.close()


def versions(sim) -> dict[str, str]:
    return {n["name"].removeprefix(f"{NAME}-"): n["version"] for n in sim.info(NAME)["nodes"]}


def test_start_records_the_upgrade_audits_it_and_marks_the_cluster(rk, admin_user):
    sim, cluster = rk
    job = start(cluster, admin_user, max_unavailable_worker="2")
    upgrade = Upgrade.objects.get(job=job)
    assert (upgrade.from_version, upgrade.to_version, upgrade.mode, upgrade.state) == (
        "v1.15.11", "v1.16.8", "rolling", "running")
    assert upgrade.strategy["max_unavailable_worker"] == "2" and upgrade.created_by == admin_user
    assert job.target == upgrade and job.cluster_id == cluster.pk and job.queue == "clusters"
    assert Cluster.objects.get(pk=cluster.pk).state == Cluster.State.UPGRADING
    assert AuditEvent.objects.filter(action="upgrade", object_id=str(cluster.pk), user=admin_user).exists()
    with pytest.raises(upgrades.UpgradeError, match="already running"):
        upgrades.start_upgrade(cluster, "v1.16.9", user=admin_user)


def test_start_refuses_imported_clusters_downgrades_and_unknown_versions(rk, admin_user):
    _, cluster = rk
    Cluster.objects.filter(pk=cluster.pk).update(kubernetes_version="v1.16.9")
    with pytest.raises(upgrades.UpgradeError, match="downgrade"):
        upgrades.start_upgrade(cluster, "v1.16.8", user=admin_user)
    with pytest.raises(upgrades.UpgradeError, match="not a supported rke version"):
        upgrades.start_upgrade(cluster, "v1.99.0", user=admin_user)
    Cluster.objects.filter(pk=cluster.pk).update(kind=Cluster.Kind.IMPORTED)
    with pytest.raises(upgrades.UpgradeError, match="imported"):
        upgrades.start_upgrade(cluster, "v1.17.4", user=admin_user)
    assert not Upgrade.objects.exists()


def test_node_that_fails_its_upgrade_pauses_and_resume_finishes(rk, admin_user, run_jobs):
    sim, cluster = rk
    sim.fail_node_upgrade(NAME, f"{NAME}-worker-1")
    job = start(cluster, admin_user, node_upgrade_timeout=20)
    run_jobs()
    job.refresh_from_db()
    upgrade = Upgrade.objects.get(job=job)
    assert job.status == Job.Status.PAUSED
    assert upgrade.state == Upgrade.State.PAUSED
    assert f"node {NAME}-worker-1 did not come back on v1.16.8" in upgrade.reason
    assert "system-upgrade-controller job apply-corral-" in upgrade.reason  # what SUC's Job shows
    states = dict(upgrade.nodes.values_list("node_name", "state"))
    assert states == {f"{NAME}-etcd-1": "active", f"{NAME}-controlplane-1": "active",
                      f"{NAME}-worker-1": "failed", f"{NAME}-worker-2": "pending"}
    cluster.refresh_from_db()
    assert cluster.state == Cluster.State.UPGRADE_PAUSED and "paused" in cluster.state_reason
    assert cordoned(sim) == []  # the failed node was uncordoned when the job stopped
    assert versions(sim)["worker-2"] == "v1.15.11"  # nothing started after the failure

    sim.fail_node_upgrade(NAME, f"{NAME}-worker-1", False)
    upgrades.resume_upgrade(upgrade, user=admin_user)
    assert Upgrade.objects.get(pk=upgrade.pk).state == Upgrade.State.RUNNING
    run_jobs()
    job.refresh_from_db()
    upgrade.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2, job.error
    assert upgrade.state == Upgrade.State.SUCCEEDED and upgrade.finished_at is not None
    assert set(versions(sim).values()) == {"v1.16.8"}
    assert walk(upgrade, "worker-1") == ["cordoned", "upgrading", "failed", "cordoned", "upgrading", "upgraded",
                                         "active"]
    assert walk(upgrade, "etcd-1") == ["cordoned", "upgrading", "upgraded", "active"]  # not done twice
    cluster.refresh_from_db()
    assert (cluster.state, cluster.state_reason, cluster.kubernetes_version) == ("active", "", "v1.16.8")
    assert {n.kubelet_version for n in cluster.nodes.all()} == {"v1.16.8"}  # inventory refreshed
    log = "\n".join(job.log_lines.values_list("message", flat=True))
    assert "worker node rk-worker-1: Cordoned → Upgrading" in log and "Continuing: 2 of 4 nodes done" in log


def test_node_not_back_in_time_pauses_with_the_reason(rk, admin_user, run_jobs):
    sim, cluster = rk
    sim.set_node_up(NAME, f"{NAME}-worker-1", False)  # powered off: its agent never answers
    job = start(cluster, admin_user, node_upgrade_timeout=1)
    run_jobs()
    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == Upgrade.State.PAUSED
    assert f"node {NAME}-worker-1 was not back Ready on v1.16.8 within 1 s" in upgrade.reason
    assert "job apply-corral-" in upgrade.reason and "1 running" in upgrade.reason  # what SUC shows
    assert cordoned(sim) == []

    sim.set_node_up(NAME, f"{NAME}-worker-1", True)
    upgrades.resume_upgrade(upgrade, user=admin_user)
    run_jobs()
    assert Upgrade.objects.get(pk=upgrade.pk).state == Upgrade.State.SUCCEEDED
    assert set(versions(sim).values()) == {"v1.16.8"}


def test_never_more_nodes_of_a_role_out_than_the_batch_allows(rk, admin_user, run_jobs):
    sim, cluster = rk
    sim.set_node_up(NAME, f"{NAME}-worker-2", False)  # already out of service before its turn
    job = start(cluster, admin_user, max_unavailable_worker="1")
    sim.wait_for(lambda: not any(c["type"] == "Ready" and c["status"] == "True" for c in
                                 sim.cluster(NAME).store.get("nodes", "", f"{NAME}-worker-2")["status"]["conditions"]))
    run_jobs()
    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == Upgrade.State.PAUSED
    assert upgrade.reason == (f"worker node(s) {NAME}-worker-2 are out of service; upgrading {NAME}-worker-1 would "
                              "take more than 1 worker node(s) out at once (max_unavailable_worker)")
    assert versions(sim)["worker-1"] == "v1.15.11" and cordoned(sim) == []

    sim.set_node_up(NAME, f"{NAME}-worker-2", True)
    upgrades.resume_upgrade(upgrade, user=admin_user)
    run_jobs()
    assert Upgrade.objects.get(pk=upgrade.pk).state == Upgrade.State.SUCCEEDED


def test_cancel_while_draining_stops_and_uncordons(rk, admin_user, run_jobs, monkeypatch):
    sim, cluster = rk
    job = start(cluster, admin_user, drain=True)
    original = Engine.tick

    def tick(self, message):
        row = next(r for r in self.rows if r.node_name == f"{NAME}-worker-1")
        if row.state == "draining" and not self.cancelling:
            upgrades.cancel_upgrade(self.upgrade, user=admin_user)
        original(self, message)

    monkeypatch.setattr(Engine, "tick", tick)
    sim.fail_node_upgrade(NAME, f"{NAME}-worker-1")  # never reached: the cancel comes first
    # Keep the drain going long enough to cancel in the middle: the PDB allows no disruption.
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    client.CustomObjectsApi(api).patch_namespaced_custom_object(  # policy/v1beta1 on a 1.15 cluster
        "policy", "v1beta1", "default", "poddisruptionbudgets", "web", {"spec": {"minAvailable": 2}},
        _content_type="application/merge-patch+json")
    api.close()
    run_jobs()
    job.refresh_from_db()
    upgrade = Upgrade.objects.get(job=job)
    assert job.status == Job.Status.CANCELLED
    assert upgrade.state == Upgrade.State.CANCELLED and "cancelled on request; 2 of 4" in upgrade.reason
    assert cordoned(sim) == []
    assert walk(upgrade, "worker-1") == ["cordoned", "draining", "pending"]
    assert dict(upgrade.nodes.values_list("node_name", "state"))[f"{NAME}-worker-2"] == "pending"
    assert versions(sim) == {"etcd-1": "v1.16.8", "controlplane-1": "v1.16.8", "worker-1": "v1.15.11",
                             "worker-2": "v1.15.11"}
    cluster.refresh_from_db()
    assert cluster.state == Cluster.State.ACTIVE and "cancelled" in cluster.state_reason


def test_cancel_of_a_paused_upgrade_releases_its_nodes_in_a_job(rk, admin_user, run_jobs):
    sim, cluster = rk
    sim.fail_node_upgrade(NAME, f"{NAME}-etcd-1")
    job = start(cluster, admin_user)
    run_jobs()
    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == Upgrade.State.PAUSED
    upgrades.cancel_upgrade(upgrade, user=admin_user)
    upgrade.refresh_from_db()
    assert upgrade.state == Upgrade.State.CANCELLED
    assert Job.objects.get(pk=job.pk).status == Job.Status.CANCELLED
    release = Job.objects.get(kind="clusters.upgrade_release")
    run_jobs()
    release.refresh_from_db()
    assert release.status == Job.Status.SUCCEEDED, release.error
    assert cordoned(sim) == []
    assert Cluster.objects.get(pk=cluster.pk).state == Cluster.State.ACTIVE
    with pytest.raises(upgrades.UpgradeError, match="already cancelled"):
        upgrades.cancel_upgrade(upgrade)


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the runner gets to clean up."""


def test_killed_run_resumes_where_it_was(rk, admin_user, run_jobs, monkeypatch):
    sim, cluster = rk
    job = start(cluster, admin_user)
    original = Engine.tick

    def tick(self, message):
        row = next(r for r in self.rows if r.node_name == f"{NAME}-controlplane-1")
        if row.state == "upgrading":
            raise Killed()
        original(self, message)

    monkeypatch.setattr(Engine, "tick", tick)
    with pytest.raises(Killed):
        run_jobs()
    monkeypatch.setattr(Engine, "tick", original)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING  # as a dead worker leaves it
    assert cordoned(sim) == [f"{NAME}-controlplane-1"]
    assert sim.cluster(NAME).store.get("nodes", "", f"{NAME}-controlplane-1")["metadata"]["annotations"][
        "upgrade.corral.io/cordoned-by"] == f"upgrade-{Upgrade.objects.get(job=job).pk}"
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=5))
    with override_settings(JOB_STALE_SECONDS=60):
        assert reap_lost_jobs()["lost"] == 1
    job.refresh_from_db()
    assert job.status == Job.Status.PAUSED  # resumable runners are paused, not failed

    upgrade = Upgrade.objects.get(job=job)
    upgrades.resume_upgrade(upgrade, user=admin_user)
    run_jobs()
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 2, job.error
    for node in ("etcd-1", "controlplane-1", "worker-1", "worker-2"):
        assert walk(upgrade, node) == ["cordoned", "upgrading", "upgraded", "active"], node
    assert cordoned(sim) == [] and set(versions(sim).values()) == {"v1.16.8"}


def test_a_node_cordoned_before_the_upgrade_stays_cordoned(rk, admin_user, run_jobs):
    sim, cluster = rk
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    client.CoreV1Api(api).patch_node(f"{NAME}-worker-2", {"spec": {"unschedulable": True}},
                                     _content_type="application/merge-patch+json")
    api.close()
    job = start(cluster, admin_user, drain=True)
    run_jobs()
    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == Upgrade.State.SUCCEEDED
    row = upgrade.nodes.get(node_name=f"{NAME}-worker-2")
    assert row.cordoned_before and row.transitions.first().message == "was already cordoned; stays cordoned"
    assert cordoned(sim) == [f"{NAME}-worker-2"]
    assert set(versions(sim).values()) == {"v1.16.8"}


def test_a_run_killed_before_recording_its_cordon_still_uncordons(rk, admin_user, run_jobs, monkeypatch):
    sim, cluster = rk
    job = start(cluster, admin_user)
    original = Engine.tick

    def tick(self, message):
        if any(r.state == "upgrading" for r in self.rows):
            raise Killed()
        original(self, message)

    monkeypatch.setattr(Engine, "tick", tick)
    with pytest.raises(Killed):
        run_jobs()
    monkeypatch.setattr(Engine, "tick", original)
    upgrade = Upgrade.objects.get(job=job)
    # As if the worker died between cordoning the node and writing down that it did.
    row = upgrade.nodes.get(node_name=f"{NAME}-etcd-1")
    row.transitions.all().delete()
    NodeUpgrade.objects.filter(pk=row.pk).update(state="pending", started_at=None)
    assert cordoned(sim) == [f"{NAME}-etcd-1"]
    Job.objects.filter(pk=job.pk).update(status=Job.Status.PAUSED)
    upgrades.resume_upgrade(upgrade, user=admin_user)
    run_jobs()
    assert Upgrade.objects.get(pk=upgrade.pk).state == Upgrade.State.SUCCEEDED
    assert not upgrade.nodes.get(node_name=f"{NAME}-etcd-1").cordoned_before
    assert cordoned(sim) == []


def test_job_pages_cancel_a_paused_upgrade_through_the_upgrade(rk, admin_user, admin_api, run_jobs):
    """Cancelling from /v3/jobs/ (or the job admin page) cancels the upgrade too and releases its nodes."""
    sim, cluster = rk
    sim.fail_node_upgrade(NAME, f"{NAME}-etcd-1")
    job = start(cluster, admin_user)
    run_jobs()
    assert Upgrade.objects.get(job=job).state == Upgrade.State.PAUSED
    response = admin_api.post(f"/v3/jobs/{job.pk}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == Upgrade.State.CANCELLED
    run_jobs()
    assert cordoned(sim) == []
    assert admin_api.post(f"/v3/jobs/{job.pk}/resume/").status_code == 409


def test_reaper_marks_the_upgrade_paused_when_its_worker_is_lost(rk, admin_user, settings):
    from datetime import timedelta

    from django.utils import timezone

    from portal.jobs import reap_lost_jobs

    sim, cluster = rk
    job = start(cluster, admin_user)
    long_ago = timezone.now() - timedelta(minutes=10)
    Job.objects.filter(pk=job.pk).update(status="running", started_at=long_ago, heartbeat_at=long_ago)
    assert reap_lost_jobs()["lost"] == 1
    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == Upgrade.State.PAUSED and "stopped responding" in upgrade.reason


def test_a_cancelled_upgrade_starts_again_with_the_same_version(rk, admin_user, admin_api, run_jobs):
    sim, cluster = rk
    sim.fail_node_upgrade(NAME, f"{NAME}-etcd-1")
    job = start(cluster, admin_user)
    run_jobs()
    upgrades.cancel_upgrade(Upgrade.objects.get(job=job), user=admin_user)
    run_jobs()
    sim.fail_node_upgrade(NAME, f"{NAME}-etcd-1", False)
    versions_before = cluster.config_versions.count()
    response = admin_api.post(f"/v3/clusters/{cluster.pk}/upgrade/", {"kubernetes_version": "v1.16.8"}, format="json")
    assert response.status_code == 202, response.content
    assert cluster.config_versions.count() == versions_before  # the config already asked for it
    assert Upgrade.objects.filter(cluster=cluster, state="running").count() == 1


def test_a_run_that_no_longer_owns_its_job_stops_without_touching_anything(rk, admin_user, run_jobs, monkeypatch):
    from portal.jobs.runner import JobSuperseded

    sim, cluster = rk
    job = start(cluster, admin_user)
    original = Engine.tick
    seen = []

    def tick(self, message):
        if any(r.state == "upgrading" for r in self.rows) and not seen:
            seen.append(True)  # another attempt claimed the row meanwhile
            Job.objects.filter(pk=job.pk).update(attempts=7)
        try:
            original(self, message)
        except JobSuperseded:
            seen.append("superseded")
            raise

    monkeypatch.setattr(Engine, "tick", tick)
    run_jobs()
    assert "superseded" in seen
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.attempts == 7  # left to the attempt that owns it
    assert Upgrade.objects.get(job=job).state == Upgrade.State.RUNNING
