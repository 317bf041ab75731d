"""The only worker is SIGKILLed while SUC upgrades a node: the job is paused within the stale window and no
node stays cordoned once it is Ready, with nobody resuming."""
from __future__ import annotations

import time

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from clusters import inventory
from clusters.models import Cluster, NodeUpgrade, Upgrade
from clusters.upgrades.testing import client_for, rke_cluster
from portal.jobs import reap_lost_jobs
from portal.models import Job
from tests.helpers import wait_for

NAME = "lw"
STALE = 1.5


@pytest.fixture
def sim():
    from kubesim import start_fleet

    fleet = start_fleet({"clusters": [rke_cluster(NAME, {"etcd": 1, "controlplane": 1, "worker": 2}, replicas=2,
                                                  min_available=1, timings={"upgrade_down": 3.0})]})
    yield fleet
    fleet.stop()


def _nodes(sim) -> list[dict]:
    from kubernetes import client

    api = client_for(sim.kubeconfig(NAME))
    try:
        return api.sanitize_for_serialization(client.CoreV1Api(api).list_node().items)
    finally:
        api.close()


def _cordoned_while_ready(sim) -> list[str]:
    return [n["metadata"]["name"] for n in _nodes(sim) if n["spec"].get("unschedulable") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])]


@pytest.mark.slow
def test_sigkilled_worker_pauses_the_upgrade_and_leaves_no_node_cordoned(sim, rq_worker, admin_user):
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    owner = APIClient()
    owner.force_login(admin_user)
    response = owner.post(f"/v3/clusters/{cluster.pk}/upgrade/", {"kubernetes_version": "v1.16.8"}, format="json")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    upgrade = Upgrade.objects.get(job_id=job_id)

    def upgrading():
        return NodeUpgrade.objects.filter(upgrade=upgrade, state="upgrading").values_list("node_name", flat=True)

    in_flight = wait_for(lambda: list(upgrading()), timeout=90, interval=0.05, message="a node in SUC's hands")
    time.sleep(0.5)  # its Plan is written in the same look
    rq_worker.kill()
    killed_at = time.monotonic()
    with override_settings(JOB_STALE_SECONDS=STALE):
        wait_for(lambda: reap_lost_jobs()["lost"] == 1, timeout=15, interval=0.25, message="the reaper")
    assert time.monotonic() - killed_at < STALE + 5
    assert Job.objects.get(pk=job_id).status == "paused"
    upgrade.refresh_from_db()
    assert upgrade.state == Upgrade.State.PAUSED
    cluster.refresh_from_db()
    assert cluster.state == Cluster.State.UPGRADE_PAUSED and "paused" in cluster.state_reason

    # Nobody resumes: the node being upgraded is uncordoned by SUC once its Job completes.
    wait_for(lambda: all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
                         for n in _nodes(sim)), timeout=30, message="every node Ready again")
    wait_for(lambda: _cordoned_while_ready(sim) == [], timeout=10, message="no Ready node left cordoned")
    log = "\n".join(Job.objects.get(pk=job_id).log_lines.values_list("message", flat=True))
    assert "Worker lost while" in log and "uncordon each of them as soon as its job completes" in log, (in_flight, log)
