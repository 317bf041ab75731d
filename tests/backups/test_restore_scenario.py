"""The scenario users check (SPEC §3): snapshot, then a Deployment, an upgrade and max-pods 250; a full
restore brings back the snapshot's objects, version and kubelet arguments. And each restore type alone."""
from __future__ import annotations

import pytest
from kubernetes import client

from backups import services
from backups.models import Restore, Snapshot
from clusters import config, inventory
from clusters.models import Cluster
from clusters.upgrades.testing import client_for, rke_cluster
from portal.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "rs"


@pytest.fixture
def rs(admin_user):
    from kubesim import start_fleet

    # Nodes post status every 0.5 s and a rejoining server restarts in 0.3 s: the restore waits for both.
    sim = start_fleet({"clusters": [rke_cluster(NAME, {"etcd": 3, "controlplane": 1, "worker": 2}, replicas=0,
                                                timings={"node_status": 0.5, "kubelet_restart": 0.3})]})
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    yield sim, cluster
    sim.stop()


class Kube:
    def __init__(self, sim):
        self.api = client_for(sim.kubeconfig(NAME))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def nodes(self) -> list[dict]:
        return self.api.sanitize_for_serialization(self.core.list_node().items)

    def versions(self) -> set[str]:
        return {n["status"]["nodeInfo"]["kubeletVersion"] for n in self.nodes()}

    def max_pods(self) -> set[str]:
        return {n["status"]["capacity"]["pods"] for n in self.nodes()}

    def deployments(self) -> list[str]:
        return [d.metadata.name for d in self.apps.list_namespaced_deployment("default").items]

    def create_deployment(self, name: str = "later") -> None:
        self.apps.create_namespaced_deployment("default", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.17.9"}]}}}})

    def snapshot_files(self) -> list[str]:
        return [i["metadata"]["name"] for i in self.custom.list_cluster_custom_object(
            "k3s.cattle.io", "v1", "etcdsnapshotfiles")["items"]]

    def close(self):
        self.api.close()


def ran(job: Job) -> Job:
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, (job.error, list(job.log_lines.values_list("message", flat=True)))
    return job


def change(cluster: Cluster, user, run_jobs, **edits) -> None:
    cluster.refresh_from_db()
    doc = config.current_document(cluster)
    if "version" in edits:
        doc["kubernetes_version"] = edits["version"]
    if "max_pods" in edits:
        doc["services"]["kubelet"]["extra_args"] = {"max-pods": edits["max_pods"]}
    job = config.apply(cluster, doc, user=user)[1]
    run_jobs()
    ran(job)


def restore(snapshot: Snapshot, parts: str, user, run_jobs) -> Restore:
    row = services.restore_snapshot(snapshot, parts=parts, user=user)
    assert Cluster.objects.get(pk=snapshot.cluster_id).state == Cluster.State.RESTORING
    run_jobs()
    ran(row.job)
    row.refresh_from_db()
    assert row.state == Restore.State.SUCCEEDED, row.reason
    return row


def take(cluster, user, run_jobs) -> Snapshot:
    snapshot = services.take_snapshot(cluster, user=user, target=None)
    run_jobs()
    ran(snapshot.job)
    snapshot.refresh_from_db()
    assert snapshot.state == Snapshot.State.READY, snapshot.reason
    return snapshot


def test_full_restore_brings_back_objects_version_and_kubelet_arguments(rs, admin_user, run_jobs):
    sim, cluster = rs
    kube = Kube(sim)
    try:
        assert kube.versions() == {"v1.15.11"} and kube.max_pods() == {"110"} and kube.deployments() == []
        snapshot = take(cluster, admin_user, run_jobs)
        assert snapshot.kubernetes_version == "v1.15.11" and snapshot.config_version == 1
        assert len(snapshot.sha256) == 64 and snapshot.size > 0 and snapshot.etcd_revision
        assert snapshot.node.startswith(f"{NAME}-etcd-") and snapshot.location.startswith("file:///var/lib/rancher/")
        assert f"local-{snapshot.name}" in kube.snapshot_files()

        kube.create_deployment()
        change(cluster, admin_user, run_jobs, version="v1.16.8")
        change(cluster, admin_user, run_jobs, max_pods="250")
        assert kube.deployments() == ["later"] and kube.versions() == {"v1.16.8"} and kube.max_pods() == {"250"}

        row = restore(snapshot, Restore.Parts.ALL, admin_user, run_jobs)
        assert kube.deployments() == []
        assert kube.versions() == {"v1.15.11"}
        assert kube.max_pods() == {"110"}
        cluster.refresh_from_db()
        assert cluster.state == Cluster.State.ACTIVE and cluster.kubernetes_version == "v1.15.11"
        latest = cluster.config
        assert latest.comment == f"restored from snapshot {snapshot.name}"
        assert latest.document["kubernetes_version"] == "v1.15.11"
        assert latest.document["services"]["kubelet"]["extra_args"] == {}
        assert row.report["difference"] == {"missing": [], "extra": []}, row.report["difference"]
        assert any("rejoined" in step for step in row.report["steps"])
        # The snapshot's own record was made after the etcd it holds was saved: Corral wrote it again.
        assert f"local-{snapshot.name}" in kube.snapshot_files()
        plans = kube.custom.list_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade", "plans")
        assert plans["items"] == []
    finally:
        kube.close()


def test_each_restore_type_changes_what_it_must_and_nothing_else(rs, admin_user, run_jobs):
    sim, cluster = rs
    kube = Kube(sim)
    try:
        snapshot = take(cluster, admin_user, run_jobs)
        kube.create_deployment()
        change(cluster, admin_user, run_jobs, version="v1.16.8")
        change(cluster, admin_user, run_jobs, max_pods="250")
        versions_before = cluster.config_versions.count()

        restore(snapshot, Restore.Parts.ETCD, admin_user, run_jobs)
        assert kube.deployments() == []
        assert kube.versions() == {"v1.16.8"} and kube.max_pods() == {"250"}  # binaries and kubelets untouched
        assert cluster.config_versions.count() == versions_before  # the config is not the etcd's

        kube.create_deployment("again")
        restore(snapshot, Restore.Parts.KUBERNETES, admin_user, run_jobs)
        assert kube.deployments() == []
        assert kube.versions() == {"v1.15.11"} and kube.max_pods() == {"250"}
        cluster.refresh_from_db()
        assert cluster.config.document["kubernetes_version"] == "v1.15.11"
        assert cluster.config.document["services"]["kubelet"]["extra_args"] == {"max-pods": "250"}

        restore(snapshot, Restore.Parts.ALL, admin_user, run_jobs)
        assert kube.versions() == {"v1.15.11"} and kube.max_pods() == {"110"}
        cluster.refresh_from_db()
        assert cluster.config.document["services"]["kubelet"]["extra_args"] == {}
    finally:
        kube.close()


def test_a_k3s_cluster_is_snapshotted_on_its_server_and_restored_with_its_version(admin_user, run_jobs):
    from clusters.upgrades.testing import k3s_cluster
    from kubesim import start_fleet

    sim = start_fleet({"clusters": [k3s_cluster("kx", servers=1, agents=2)]})
    try:
        cluster = inventory.import_cluster(name="kx", kubeconfig=sim.kubeconfig("kx"), user=admin_user)
        api = client_for(sim.kubeconfig("kx"))
        apps = client.AppsV1Api(api)
        core = client.CoreV1Api(api)
        snapshot = take(cluster, admin_user, run_jobs)
        assert snapshot.node == "kx-server-1" and "/var/lib/rancher/k3s/server/db/snapshots/" in snapshot.location
        change(cluster, admin_user, run_jobs, version="v1.17.5+k3s1")
        apps.create_namespaced_deployment("default", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "later"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "later"}},
                     "template": {"metadata": {"labels": {"app": "later"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.17.9"}]}}}})
        assert {n.status.node_info.kubelet_version for n in core.list_node().items} == {"v1.17.5+k3s1"}
        restore(snapshot, Restore.Parts.KUBERNETES, admin_user, run_jobs)
        assert [d.metadata.name for d in apps.list_namespaced_deployment("default").items] == []
        assert {n.status.node_info.kubelet_version for n in core.list_node().items} == {"v1.17.4+k3s1"}
        cluster.refresh_from_db()
        assert cluster.kubernetes_version == "v1.17.4+k3s1"
        assert cluster.config.document["kubernetes_version"] == "v1.17.4+k3s1"
        api.close()
    finally:
        sim.stop()
