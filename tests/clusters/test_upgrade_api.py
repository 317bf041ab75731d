"""/v3/upgrades/ and the Upgrade admin page: follow, resume, cancel; and one upgrade end to end on a real worker."""
from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from clusters import config, inventory
from clusters.models import Cluster, NodeUpgrade, Upgrade
from clusters.upgrades.testing import client_for, rke_cluster
from portal.jobs import reap_lost_jobs
from portal.models import Job
from rbac.models import ClusterRoleBinding, RoleTemplate
from tests.helpers import WorkerProcess, wait_for

NAME = "ua"


@pytest.fixture
def sim():
    from kubesim import start_fleet

    fleet = start_fleet({"clusters": [rke_cluster(NAME, {"etcd": 1, "controlplane": 1, "worker": 2}, replicas=2,
                                                  min_available=1)]})
    yield fleet
    fleet.stop()


def _client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _cordoned(sim) -> list[str]:
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    try:
        return [n.metadata.name for n in client.CoreV1Api(api).list_node().items if n.spec.unschedulable]
    finally:
        api.close()


@pytest.mark.django_db
def test_api_and_admin_follow_a_paused_upgrade_then_resume_it(sim, admin_user, make_user, run_jobs, client):
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    member, outsider = make_user("member"), make_user("outsider")
    ClusterRoleBinding.objects.create(cluster=cluster, role=RoleTemplate.objects.get(name="cluster-member"), user=member)
    sim.fail_node_upgrade(NAME, f"{NAME}-worker-1")
    doc = config.current_document(cluster)
    doc["kubernetes_version"] = "v1.16.8"
    job = config.apply(cluster, doc, user=admin_user)[1]
    run_jobs()
    upgrade = Upgrade.objects.get(job=job)
    assert upgrade.state == "paused"

    owner = _client(admin_user)
    listed = owner.get(f"/v3/upgrades/?cluster={cluster.pk}").json()["results"]
    assert [u["id"] for u in listed] == [upgrade.pk]
    summary = listed[0]
    assert (summary["state"], summary["to_version"], summary["nodes_total"], summary["nodes_done"]) == (
        "paused", "v1.16.8", 4, 2)
    assert summary["capabilities"] == {"view": True, "resume": True, "cancel": True}
    assert summary["job_status"] == "paused" and 0 < summary["progress"] < 100
    detail = owner.get(f"/v3/upgrades/{upgrade.pk}/").json()
    nodes = {n["node_name"]: n for n in detail["nodes"]}
    failed = nodes[f"{NAME}-worker-1"]
    assert failed["state"] == "failed" and "did not come back" in failed["message"]
    assert [t["to_state"] for t in failed["transitions"]] == ["cordoned", "upgrading", "failed"]
    assert all(t["at"] for t in failed["transitions"])
    assert nodes[f"{NAME}-etcd-1"]["finished_at"] and nodes[f"{NAME}-etcd-1"]["batch"] == 0

    as_member = _client(member)
    assert as_member.get(f"/v3/upgrades/{upgrade.pk}/").json()["capabilities"] == {
        "view": True, "resume": False, "cancel": False}
    assert as_member.post(f"/v3/upgrades/{upgrade.pk}/resume/").status_code == 403
    assert as_member.post(f"/v3/upgrades/{upgrade.pk}/cancel/").status_code == 403
    assert _client(outsider).get(f"/v3/upgrades/{upgrade.pk}/").status_code == 404
    assert _client(outsider).post(f"/v3/upgrades/{upgrade.pk}/cancel/").status_code == 404
    assert owner.patch(f"/v3/upgrades/{upgrade.pk}/", {"state": "succeeded"}, format="json").status_code == 405

    client.force_login(admin_user)
    page = client.get(f"/admin/clusters/upgrade/{upgrade.pk}/change/").content.decode()
    assert "Resume upgrade" in page and "Cancel upgrade" in page and "corral-progress big" in page
    assert f"{NAME}-worker-1" in page and "did not come back" in page and "/v3/upgrades/" in page
    assert "corral-progress" in client.get("/admin/clusters/upgrade/").content.decode()
    client.force_login(member)
    page = client.get(f"/admin/clusters/upgrade/{upgrade.pk}/change/").content.decode()
    assert "Resume upgrade" not in page
    client.post(f"/admin/clusters/upgrade/{upgrade.pk}/resume/")
    assert Job.objects.get(pk=job.pk).status == "paused"  # a member may not resume

    sim.fail_node_upgrade(NAME, f"{NAME}-worker-1", False)
    client.force_login(admin_user)
    response = client.post(f"/admin/clusters/upgrade/{upgrade.pk}/resume/")
    assert response.status_code == 302
    assert Job.objects.get(pk=job.pk).status == "queued"
    run_jobs()
    final = owner.get(f"/v3/upgrades/{upgrade.pk}/").json()
    assert (final["state"], final["progress"], final["nodes_done"]) == ("succeeded", 100, 4)
    assert final["capabilities"] == {"view": True, "resume": False, "cancel": False}
    again = owner.post(f"/v3/upgrades/{upgrade.pk}/resume/")
    assert again.status_code == 409 and "only a paused upgrade" in again.json()["error"]["message"]
    assert owner.post(f"/v3/upgrades/{upgrade.pk}/cancel/").status_code == 409


@pytest.mark.slow
def test_upgrade_on_a_real_worker_survives_the_worker_being_killed(sim, rq_worker, admin_user, tmp_path):
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    owner = _client(admin_user)
    response = owner.post(f"/v3/clusters/{cluster.pk}/upgrade/", {"kubernetes_version": "v1.16.8"}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    upgrade = Upgrade.objects.get(job_id=job_id)

    def halfway():
        states = list(NodeUpgrade.objects.filter(upgrade=upgrade).values_list("state", flat=True))
        return states.count("active") >= 2 and "upgrading" in states

    wait_for(halfway, timeout=60, interval=0.05, message="the upgrade to be half way")
    rq_worker.kill()
    assert Job.objects.get(pk=job_id).status == "running"
    with override_settings(JOB_STALE_SECONDS=1.5):
        wait_for(lambda: reap_lost_jobs()["lost"] == 1, timeout=15, interval=0.5, message="the reaper")
    assert Job.objects.get(pk=job_id).status == "paused"
    done_before = set(NodeUpgrade.objects.filter(upgrade=upgrade, state="active").values_list("node_name", flat=True))

    view = owner.get(f"/v3/upgrades/{upgrade.pk}/").json()
    assert view["state"] == "paused" and view["job_status"] == "paused"  # the reaper paused both
    assert view["capabilities"]["resume"] is True
    assert owner.post(f"/v3/upgrades/{upgrade.pk}/resume/").status_code == 202
    worker = WorkerProcess(tmp_path / "second-worker.log").start()
    try:
        wait_for(lambda: Job.objects.get(pk=job_id).is_finished, timeout=60, message="the resumed upgrade")
    finally:
        worker.stop()
    job = Job.objects.get(pk=job_id)
    assert job.status == "succeeded" and job.attempts == 2, job.error
    assert Upgrade.objects.get(pk=upgrade.pk).state == "succeeded"
    for row in NodeUpgrade.objects.filter(upgrade=upgrade, node_name__in=done_before):
        assert list(row.transitions.values_list("to_state", flat=True)) == ["cordoned", "upgrading", "upgraded",
                                                                            "active"]
    assert {n["version"] for n in sim.info(NAME)["nodes"]} == {"v1.16.8"}
    assert _cordoned(sim) == []


@pytest.mark.django_db
def test_a_refused_upgrade_is_a_400_on_kubernetes_version_and_saves_nothing(sim, admin_user):
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    Cluster.objects.filter(pk=cluster.pk).update(kubernetes_version="v1.16.8")
    versions_before = cluster.config_versions.count()
    response = _client(admin_user).post(f"/v3/clusters/{cluster.pk}/upgrade/", {"kubernetes_version": "v1.15.12"},
                                        format="json")
    assert response.status_code == 400, response.content
    assert "downgrade" in response.json()["error"]["fields"]["kubernetes_version"][0]
    assert cluster.config_versions.count() == versions_before and not Upgrade.objects.exists()
