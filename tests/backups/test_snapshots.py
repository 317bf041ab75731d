"""Snapshots through the portal against simulated clusters and a local S3 server: targets, refusals that
leave the cluster untouched, recurring snapshots with retention, the automatic ones, imported clusters."""
from __future__ import annotations

from datetime import timedelta

import pytest
from kubernetes import client

from backups import services
from backups.models import BackupTarget, Restore, Snapshot
from clusters import config, inventory
from clusters.models import Cluster
from clusters.upgrades.testing import client_for, rke_cluster
from portal.models import Job
from tests.backups.test_etcd_snapshot_image import BUCKET, S3, s3  # noqa: F401 - the moto server fixture

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "bk"
SNAPSHOTS = "/var/lib/rancher/rke2/server/db/snapshots"


@pytest.fixture
def bk(admin_user):
    from kubesim import start_fleet

    sim = start_fleet({"clusters": [
        rke_cluster(NAME, {"etcd": 1, "controlplane": 1, "worker": 1}, replicas=0),
        {"name": "imp", "kind": "imported", "version": "v1.18.6", "nodes": {"server": 1, "agent": 1}},
    ]})
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    yield sim, cluster
    sim.stop()


def api(sim, name=NAME):
    return client_for(sim.kubeconfig(name))


def finished(job: Job) -> Job:
    job.refresh_from_db()
    return job


def take(cluster, user, run_jobs, **kw) -> Snapshot:
    snapshot = services.take_snapshot(cluster, user=user, **kw)
    run_jobs()
    snapshot.refresh_from_db()
    return snapshot


def target_for(cluster, s3: S3, **override) -> BackupTarget:  # noqa: F811
    fields = {"name": "bucket", "cluster": cluster, "endpoint": s3.url, "region": "us-east-1", "bucket": BUCKET,
              "folder": f"fleet/{cluster.name}", "access_key": s3.access_key, "secret_key": s3.secret_key}
    return BackupTarget.objects.create(**{**fields, **override})


def files(sim, node: str) -> list[str]:
    return sorted(sim.cluster(NAME).nodes[node].disk.listdir(SNAPSHOTS))


def records(sim) -> list[str]:
    a = api(sim)
    try:
        return sorted(i["metadata"]["name"] for i in client.CustomObjectsApi(a).list_cluster_custom_object(
            "k3s.cattle.io", "v1", "etcdsnapshotfiles")["items"])
    finally:
        a.close()


def test_s3_target_receives_both_files_and_a_lost_portal_rediscovers_and_restores_from_the_bucket(
        bk, s3, admin_user, run_jobs):  # noqa: F811
    sim, cluster = bk
    target = target_for(cluster, s3)
    snapshot = take(cluster, admin_user, run_jobs, target=target)
    assert snapshot.state == Snapshot.State.READY, snapshot.reason
    keys = sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"fleet/{NAME}/")["Contents"])
    assert keys == [f"fleet/{NAME}/{snapshot.name}", f"fleet/{NAME}/{snapshot.name}.manifest.json"]
    assert snapshot.s3_location == f"s3://{BUCKET}/fleet/{NAME}/{snapshot.name}"
    assert records(sim) == [f"local-{snapshot.name}", f"s3-{snapshot.name}"]

    # The portal's records are lost; the bucket alone tells what there was.
    sha, size = snapshot.sha256, snapshot.size
    Snapshot.objects.all().delete()
    found = services.discover(cluster, target, user=admin_user)
    assert [s.name for s in found] == [snapshot.name]
    again = found[0]
    assert (again.sha256, again.size, again.kubernetes_version, again.trigger) == (sha, size, "v1.15.11", "discovered")

    # The node's own copy is gone too: the restore fetches the bucket's, verified, then restores.
    node = snapshot.node
    sim.cluster(NAME).nodes[node].disk.remove(f"{SNAPSHOTS}/{snapshot.name}")
    a = api(sim)
    client.CoreV1Api(a).create_namespaced_config_map("default", {"metadata": {"name": "later"}})
    restore = services.restore_snapshot(again, parts=Restore.Parts.ETCD, user=admin_user)
    run_jobs()
    restore.refresh_from_db()
    assert restore.state == Restore.State.SUCCEEDED, restore.reason
    names = [c.metadata.name for c in client.CoreV1Api(a).list_namespaced_config_map("default").items]
    a.close()
    assert "later" not in names
    assert snapshot.name in files(sim, node)  # fetched from the bucket onto the node


def test_a_wrong_secret_key_fails_the_snapshot_with_the_reason(bk, s3, admin_user, run_jobs):  # noqa: F811
    sim, cluster = bk
    target = target_for(cluster, s3, secret_key="not-the-key")
    snapshot = take(cluster, admin_user, run_jobs, target=target)
    assert snapshot.state == Snapshot.State.FAILED
    assert "SignatureDoesNotMatch" in snapshot.reason or "secret key" in snapshot.reason, snapshot.reason
    job = finished(snapshot.job)
    assert job.status == Job.Status.FAILED and snapshot.reason.split(":")[0] in job.error
    assert "not-the-key" not in job.error and "not-the-key" not in snapshot.reason


def test_corrupt_foreign_and_missing_snapshots_are_refused_and_the_cluster_is_untouched(bk, admin_user, run_jobs):
    sim, cluster = bk
    snapshot = take(cluster, admin_user, run_jobs, target=None)
    assert snapshot.state == Snapshot.State.READY, snapshot.reason
    a = api(sim)
    core = client.CoreV1Api(a)
    core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}})
    disk = sim.cluster(NAME).nodes[snapshot.node].disk
    path = f"{SNAPSHOTS}/{snapshot.name}"
    good = disk.read(path)

    def refused(words: str) -> None:
        restore = services.restore_snapshot(snapshot, parts=Restore.Parts.ALL, user=admin_user)
        run_jobs()
        restore.refresh_from_db()
        assert restore.state == Restore.State.FAILED
        assert restore.reason.startswith("refused, the cluster was not changed") and words in restore.reason, \
            restore.reason
        assert "kept" in [c.metadata.name for c in core.list_namespaced_config_map("default").items]
        assert core.list_namespaced_config_map("kube-system", field_selector="metadata.name=corral-restore").items == []
        plans = client.CustomObjectsApi(a).list_namespaced_custom_object("upgrade.cattle.io", "v1", "system-upgrade",
                                                                         "plans")["items"]
        assert plans == []
        fresh = Cluster.objects.get(pk=cluster.pk)
        assert fresh.state == Cluster.State.ACTIVE and "refused" in fresh.state_reason
        assert fresh.config_versions.count() == 1

    disk.write(path, good[:-10] + b"0123456789")  # same size, other bytes
    refused("sha256")
    disk.write(path, good[: len(good) // 2])
    refused("truncated")
    disk.remove(path)
    refused("missing")
    disk.write(path, good)
    Snapshot.objects.filter(pk=snapshot.pk).update(cluster_uid="another-cluster")
    snapshot.refresh_from_db()
    refused("another cluster")
    a.close()


def test_recurring_snapshots_keep_the_last_n_and_never_count_manual_ones(bk, admin_user, run_jobs):
    sim, cluster = bk
    doc = config.current_document(cluster)
    doc["etcd_backup"].update(interval_hours=1, retention=2)
    config.apply(cluster, doc, user=admin_user)
    manual = take(cluster, admin_user, run_jobs, target=None)
    made = []
    for _ in range(3):
        queued = services.schedule_recurring()
        assert [s.cluster_id for s in queued] == [cluster.pk]
        assert services.schedule_recurring() == []  # not due again until the interval has passed
        run_jobs()
        made.append(Snapshot.objects.get(pk=queued[0].pk))
        assert made[-1].state == Snapshot.State.READY, made[-1].reason
        Snapshot.objects.filter(pk=made[-1].pk).update(created_at=made[-1].created_at - timedelta(hours=1, minutes=1))
    remaining = set(Snapshot.objects.values_list("name", flat=True))
    assert remaining == {manual.name, made[1].name, made[2].name}
    node = manual.node
    assert made[0].name not in files(sim, node) and f"{made[0].name}.manifest.json" not in files(sim, node)
    assert f"local-{made[0].name}" not in records(sim) and f"local-{made[2].name}" in records(sim)
    assert manual.name in files(sim, node)


def test_a_snapshot_is_taken_after_import_and_before_every_upgrade(bk, admin_user, run_jobs, settings):
    sim, _ = bk
    settings.SNAPSHOT_AFTER_IMPORT = settings.SNAPSHOT_BEFORE_UPGRADE = True
    Cluster.objects.all().delete()
    cluster = inventory.import_cluster(name=NAME, kubeconfig=sim.kubeconfig(NAME), user=admin_user)
    first = Snapshot.objects.get(cluster=cluster)
    assert first.trigger == Snapshot.Trigger.AFTER_IMPORT
    run_jobs()
    first.refresh_from_db()
    assert first.state == Snapshot.State.READY, first.reason
    doc = config.current_document(cluster)
    doc["kubernetes_version"] = "v1.16.8"
    job = config.apply(cluster, doc, user=admin_user)[1]
    run_jobs()
    job = finished(job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    before = Snapshot.objects.get(cluster=cluster, trigger=Snapshot.Trigger.BEFORE_UPGRADE)
    assert before.state == Snapshot.State.READY and before.kubernetes_version == "v1.15.11"
    log = list(job.log_lines.values_list("message", flat=True))
    taken = next(i for i, m in enumerate(log) if m == f"Snapshot {before.name} taken before the upgrade")
    first_batch = next(i for i, m in enumerate(log) if m.startswith("Batch 1/"))
    assert taken < first_batch


def test_an_imported_cluster_gets_a_resource_backup_and_restore(bk, admin_user, run_jobs, settings, tmp_path):
    sim, _ = bk
    settings.BACKUP_DIR = tmp_path / "backups"
    cluster = inventory.import_cluster(name="imp", kubeconfig=sim.kubeconfig("imp"), user=admin_user)
    assert cluster.kind == Cluster.Kind.IMPORTED
    a = api(sim, "imp")
    core = client.CoreV1Api(a)
    core.create_namespace({"metadata": {"name": "shop"}})
    core.create_namespaced_config_map("shop", {"metadata": {"name": "settings"}, "data": {"colour": "green"}})
    core.create_namespaced_secret("shop", {"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}})
    with pytest.raises(services.BackupError, match="imported clusters only|resource backups"):
        services.take_snapshot(Cluster.objects.get(name=NAME), user=admin_user, target=None,
                               filters={"include_namespaces": ["shop"]})
    snapshot = take(cluster, admin_user, run_jobs, target=None, filters={"include_namespaces": ["shop"]})
    assert snapshot.state == Snapshot.State.READY and snapshot.kind == Snapshot.Kind.RESOURCES, snapshot.reason
    assert ["configmaps", "shop", "settings"] in [list(i) for i in snapshot.manifest["inventory"]]
    core.delete_namespaced_config_map("settings", "shop")
    core.delete_namespaced_secret("db", "shop")
    with pytest.raises(services.BackupError, match="restores its objects only"):
        services.restore_snapshot(snapshot, parts=Restore.Parts.ALL, user=admin_user)
    restore = services.restore_snapshot(snapshot, parts=Restore.Parts.ETCD, user=admin_user)
    run_jobs()
    restore.refresh_from_db()
    assert restore.state == Restore.State.SUCCEEDED, restore.reason
    assert core.read_namespaced_config_map("settings", "shop").data == {"colour": "green"}
    assert core.read_namespaced_secret("db", "shop").data == {"password": "aHVudGVyMg=="}
    assert restore.report["difference"] == {"missing": [], "extra": []}
    # A corrupt archive is refused before anything is applied.
    path = settings.BACKUP_DIR / str(cluster.pk) / f"{snapshot.name}.json.gz"
    path.write_bytes(path.read_bytes()[:-5])
    core.delete_namespaced_config_map("settings", "shop")
    restore = services.restore_snapshot(snapshot, parts=Restore.Parts.ETCD, user=admin_user)
    run_jobs()
    restore.refresh_from_db()
    assert restore.state == Restore.State.FAILED and restore.reason.startswith("refused"), restore.reason
    assert "settings" not in [c.metadata.name for c in core.list_namespaced_config_map("shop").items]
    a.close()


def test_api_takes_and_restores_with_clear_refusals(bk, admin_user, run_jobs):
    from rest_framework.test import APIClient

    sim, cluster = bk
    c = APIClient()
    c.force_authenticate(admin_user)
    r = c.post(f"/v3/clusters/{cluster.pk}/snapshot/", {"target": None}, format="json")
    assert r.status_code == 202, r.content
    sid = r.json()["id"]
    r = c.post(f"/v3/snapshots/{sid}/restore/", {"parts": "etcd"}, format="json")
    assert r.status_code == 409 and "Pending" in r.json()["error"]["message"]  # not taken yet
    run_jobs()
    r = c.post(f"/v3/snapshots/{sid}/restore/", {"parts": "everything"}, format="json")
    assert r.status_code == 400 and "parts" in r.json()["error"]["fields"]
    r = c.post(f"/v3/clusters/{cluster.pk}/snapshot/", {"target": "nowhere"}, format="json")
    assert r.status_code == 400 and "nowhere" in r.json()["error"]["fields"]["target"][0]
    r = c.post(f"/v3/snapshots/{sid}/restore/", {"parts": "etcd"}, format="json")
    assert r.status_code == 202, r.content
    assert c.get(f"/v3/clusters/{cluster.pk}/").json()["state"] == "restoring"
    run_jobs()
    r = c.get(f"/v3/restores/{r.json()['id']}/")
    assert r.json()["state"] == "succeeded" and r.json()["report"]["difference"] == {"missing": [], "extra": []}
    listed = c.get("/v3/snapshots/", {"cluster": cluster.pk}).json()["results"]
    assert [s["id"] for s in listed] == [sid] and listed[0]["restorable"] is True
    r = c.delete(f"/v3/snapshots/{sid}/")
    assert r.status_code == 202
    run_jobs()
    assert not Snapshot.objects.filter(pk=sid).exists()


def test_records_in_the_cluster_are_reconciled_with_corrals_snapshots(bk, admin_user, run_jobs):
    from backups import snapshots

    sim, cluster = bk
    snapshot = take(cluster, admin_user, run_jobs, target=None)
    a = api(sim)
    custom = client.CustomObjectsApi(a)
    record = custom.get_cluster_custom_object("k3s.cattle.io", "v1", "etcdsnapshotfiles", f"local-{snapshot.name}")
    # Someone removes the record (as `rke2 etcd-snapshot delete` would): Corral marks the snapshot Missing.
    custom.delete_cluster_custom_object("k3s.cattle.io", "v1", "etcdsnapshotfiles", f"local-{snapshot.name}")
    assert snapshots.reconcile_cluster(cluster) == {"added": [], "missing": [snapshot.name]}
    snapshot.refresh_from_db()
    assert snapshot.state == Snapshot.State.MISSING
    with pytest.raises(services.BackupError, match="Missing"):
        services.restore_snapshot(snapshot, parts=Restore.Parts.ETCD, user=admin_user)
    # A record Corral never made (another portal, a lost database) is taken in as Discovered; it comes back too.
    for name in (snapshot.name, "bk-manual-19990101-000000"):
        body = {k: record[k] for k in ("apiVersion", "kind", "spec")}
        body["metadata"] = {"name": f"local-{name}"}
        body["spec"] = dict(body["spec"], snapshotName=name)
        custom.create_cluster_custom_object("k3s.cattle.io", "v1", "etcdsnapshotfiles", body)
    found = snapshots.reconcile_cluster(cluster)
    a.close()
    assert found == {"added": ["bk-manual-19990101-000000"], "missing": []}
    snapshot.refresh_from_db()
    assert snapshot.state == Snapshot.State.READY
    other = Snapshot.objects.get(name="bk-manual-19990101-000000")
    assert other.trigger == Snapshot.Trigger.DISCOVERED and other.sha256 == snapshot.sha256


def test_admin_takes_restores_and_shows_the_report(bk, admin_user, run_jobs):
    from django.test import Client

    sim, cluster = bk
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(f"/admin/clusters/cluster/{cluster.pk}/change/").content.decode()
    assert "Take snapshot" in page and "Snapshots" in page
    r = browser.post(f"/admin/backups/snapshot/take/{cluster.pk}/")
    snapshot = Snapshot.objects.get(cluster=cluster)
    assert r.status_code == 302 and r["Location"].endswith(f"/admin/portal/job/{snapshot.job_id}/change/")
    run_jobs()
    listing = browser.get("/admin/backups/snapshot/").content.decode()
    assert snapshot.name in listing and "Ready" in listing
    page = browser.get(f"/admin/backups/snapshot/{snapshot.pk}/change/").content.decode()
    assert "Restore…" in page
    form = browser.get(f"/admin/backups/snapshot/{snapshot.pk}/restore/").content.decode()
    assert "etcd, Kubernetes version and cluster config" in form
    r = browser.post(f"/admin/backups/snapshot/{snapshot.pk}/restore/", {"parts": "etcd"})
    restore = Restore.objects.get(snapshot=snapshot)
    assert r.status_code == 302 and r["Location"].endswith(f"/admin/backups/restore/{restore.pk}/change/")
    run_jobs()
    page = browser.get(f"/admin/backups/restore/{restore.pk}/change/").content.decode()
    assert "Succeeded" in page and "the cluster&#x27;s objects are the snapshot&#x27;s" in page
    assert f"verified {snapshot.name}" in page


def test_sending_back_a_read_target_keeps_its_keys(admin_user):
    from rest_framework.test import APIClient

    cluster = Cluster.objects.create(name="keys", kind="rke", state=Cluster.State.ACTIVE)
    target = BackupTarget.objects.create(name="t", cluster=cluster, endpoint="s3.example.com", bucket="corral-b",
                                         access_key="AKIAEXAMPLEKEY0001", secret_key="secret-key-that-is-long-0001")
    c = APIClient()
    c.force_authenticate(admin_user)
    body = c.get(f"/v3/backuptargets/{target.pk}/").json()
    assert "secret-key-that-is-long" not in str(body) and body["secret_key"].endswith("0001")
    body.pop("capabilities")
    r = c.put(f"/v3/backuptargets/{target.pk}/", body, format="json")
    assert r.status_code == 200, r.content
    target.refresh_from_db()
    assert (target.access_key, target.secret_key) == ("AKIAEXAMPLEKEY0001", "secret-key-that-is-long-0001")
    r = c.patch(f"/v3/backuptargets/{target.pk}/", {"secret_key": "a-new-secret-key-0002"}, format="json")
    target.refresh_from_db()
    assert r.status_code == 200 and target.secret_key == "a-new-secret-key-0002"
