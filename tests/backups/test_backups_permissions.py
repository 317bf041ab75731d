"""Backups and the permission layer: what a reviewer would try to escalate or leak.

Taking a snapshot (``cluster.snapshot``), restoring one (``cluster.restore`` and the snapshot
visible) and deleting one (``snapshot.delete``) are separate powers; seeing snapshots gives none of
them. Tenant B sees none of tenant A's targets, snapshots or restores, cannot restore A's snapshot
by id, point a target at A's cluster or send a snapshot to A's bucket. A target's keys are written,
never read back: not by the API, the admin pages or the audit log.

The generated per-role cases are in tests/rbac/test_writes.py and tests/rbac/test_admin_writes.py;
these are the same rules tried the way an attacker would, with the service functions too.
"""
from __future__ import annotations

import json
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from rest_framework.test import APIClient

from backups import services
from backups.models import BackupTarget, Restore, Snapshot
from clusters.models import Cluster
from portal.models import AuditEvent, Job
from rbac import access
from rbac.models import ClusterRoleBinding, RoleTemplate
from tests.rbac.writes import deletion_queued
from tests.tenancy import (
    UNREACHABLE_S3,
    Tenant,
    backup_target,
    finished_restore,
    make_tenant,
    ready_snapshot,
    target_keys,
)

ADMIN = "/admin/backups"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def tenants(db) -> tuple[Tenant, Tenant]:
    a, b = make_tenant("ta"), make_tenant("tb")
    Cluster.objects.filter(pk__in=[a.cluster.pk, b.cluster.pk]).update(kind="rke", kubernetes_version="v1.15.11")
    a.cluster.refresh_from_db()
    b.cluster.refresh_from_db()
    return a, b


def bound(django_user_model, name: str, cluster: Cluster, role: str, permissions: list[str] | None = None):
    """A user holding ``role`` on ``cluster`` (a custom cluster role when ``permissions`` are given)."""
    user = django_user_model.objects.create_user(name, password="pw-123456")
    if permissions is not None:
        template = RoleTemplate.objects.create(name=role, context="cluster", permissions=permissions)
    else:
        template = RoleTemplate.objects.get(name=role)
    ClusterRoleBinding.objects.create(cluster=cluster, role=template, user=user)
    return user


def api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def said(response) -> list[str]:
    """The messages an admin answer carries (shown on its page or waiting for the next one)."""
    storage = getattr(response.wsgi_request, "_messages", None)
    return [] if storage is None else [str(m) for m in [*storage._loaded_messages, *storage._queued_messages]]


def ids(response) -> set[int]:
    assert response.status_code == 200, response.content[:300]
    return {item["id"] for item in response.json()["results"]}


def take(client, cluster: Cluster, body: dict | None = None):
    return client.post(f"/v3/clusters/{cluster.pk}/snapshot/", body if body is not None else {}, format="json")


def restore(client, snapshot: Snapshot):
    return client.post(f"/v3/snapshots/{snapshot.pk}/restore/", {"parts": "etcd"}, format="json")


def admin_delete_everywhere(client, *snapshots: Snapshot):
    return client.post(f"{ADMIN}/snapshot/", {"action": "delete_everywhere", "index": "0",
                                              "_selected_action": [str(s.pk) for s in snapshots]})


def restores_of(cluster: Cluster) -> int:
    return Restore.objects.filter(cluster=cluster).count()


def state_of(cluster: Cluster) -> str:
    return Cluster.objects.get(pk=cluster.pk).state


# --------------------------------------------------------------------------------------------- separate powers

def test_cluster_member_sees_snapshots_but_cannot_take_restore_or_delete(tenants, django_user_model):
    a, _ = tenants
    member = bound(django_user_model, "ta-viewer", a.cluster, "cluster-member")  # snapshot.view, nothing more
    snapshot = ready_snapshot(a)
    client = api(member)

    seen = client.get(f"/v3/snapshots/{snapshot.pk}/")
    assert seen.status_code == 200, "a cluster member sees the cluster's snapshots"
    assert seen.json()["capabilities"] == {"view": True, "delete": False}
    assert seen.json()["restorable"] is False

    assert take(client, a.cluster, {"target": None}).status_code == 403
    assert take(client, a.cluster).status_code == 403
    assert restore(client, snapshot).status_code == 403
    assert client.delete(f"/v3/snapshots/{snapshot.pk}/").status_code == 403

    admin = browser(member)
    r = admin.post(f"{ADMIN}/snapshot/take/{a.cluster.pk}/")
    assert r.status_code == 302 and any("may not take snapshots" in m for m in said(r)), said(r)
    page = admin.get(f"{ADMIN}/snapshot/{snapshot.pk}/restore/")
    assert page.status_code == 200 and "You may not restore this cluster." in page.content.decode()
    r = admin.post(f"{ADMIN}/snapshot/{snapshot.pk}/restore/", {"parts": "etcd"})
    assert r.status_code == 200 and any("may not restore" in m for m in said(r)), said(r)
    r = admin_delete_everywhere(admin, snapshot)
    assert any("may not delete" in m for m in said(r)), said(r)

    with pytest.raises(access.WriteRefused):
        services.take_snapshot(a.cluster, user=member, target=None)
    with pytest.raises(access.WriteRefused):
        services.restore_snapshot(snapshot, user=member)
    with pytest.raises(access.WriteRefused):
        services.delete_snapshots([snapshot], user=member)

    assert list(Snapshot.objects.filter(cluster=a.cluster)) == [snapshot], "a snapshot was taken"
    assert restores_of(a.cluster) == 0 and state_of(a.cluster) == Cluster.State.ACTIVE
    assert not deletion_queued(snapshot)
    assert not Job.objects.filter(kind__startswith="backups.").exists()


def test_taking_snapshots_does_not_give_restoring_them(tenants, django_user_model):
    a, _ = tenants
    snapshotter = bound(django_user_model, "ta-snapshotter", a.cluster, "snapshotter",
                        ["cluster.view", "snapshot.view", "backuptarget.view", "cluster.snapshot"])
    snapshot = ready_snapshot(a)
    client, admin = api(snapshotter), browser(snapshotter)

    assert client.get(f"/v3/snapshots/{snapshot.pk}/").json()["restorable"] is False
    assert restore(client, snapshot).status_code == 403
    r = admin.post(f"{ADMIN}/snapshot/{snapshot.pk}/restore/", {"parts": "etcd"})
    assert r.status_code == 200 and any("may not restore" in m for m in said(r)), said(r)
    with pytest.raises(access.WriteRefused):
        services.restore_snapshot(snapshot, parts="all", user=snapshotter)
    assert restores_of(a.cluster) == 0 and state_of(a.cluster) == Cluster.State.ACTIVE

    # ... while taking one is theirs, to the cluster's own target too.
    taken = take(client, a.cluster, {"target": backup_target(a).name})
    assert taken.status_code == 202, taken.content[:300]
    assert Snapshot.objects.get(pk=taken.json()["id"]).job.kind == "backups.snapshot"


def test_restoring_needs_the_snapshot_visible(tenants, django_user_model):
    """``cluster.restore`` alone: the snapshot is not one the user may see, so it is no snapshot to them."""
    a, _ = tenants
    restorer = bound(django_user_model, "ta-restorer", a.cluster, "blind-restorer", ["cluster.view", "cluster.restore"])
    snapshot = ready_snapshot(a)
    assert restore(api(restorer), snapshot).status_code == 404
    assert browser(restorer).post(f"{ADMIN}/snapshot/{snapshot.pk}/restore/", {"parts": "etcd"}).status_code == 404
    with pytest.raises(access.WriteRefused):
        services.restore_snapshot(snapshot, user=restorer)
    assert restores_of(a.cluster) == 0 and state_of(a.cluster) == Cluster.State.ACTIVE


@pytest.mark.parametrize("newest", ["mine", "theirs"])
def test_one_refused_snapshot_in_a_bulk_delete_deletes_none(tenants, django_user_model, newest):
    """Owner of A, member of B: "delete everywhere" on a snapshot of each is refused as a whole, whichever
    cluster's snapshots the action comes to first (the list is newest first)."""
    a, b = tenants
    user = bound(django_user_model, "ta-b-member", b.cluster, "cluster-member")
    ClusterRoleBinding.objects.create(cluster=a.cluster, role=RoleTemplate.objects.get(name="cluster-owner"), user=user)
    mine, theirs = ready_snapshot(a), ready_snapshot(b)
    older = theirs if newest == "mine" else mine
    Snapshot.objects.filter(pk=older.pk).update(created_at=older.created_at - timedelta(days=1))
    r = admin_delete_everywhere(browser(user), mine, theirs)
    assert any("may not delete" in m for m in said(r)), said(r)
    assert not deletion_queued(mine) and not deletion_queued(theirs)
    assert not AuditEvent.objects.filter(action="delete", cluster__in=[a.cluster, b.cluster]).exists()


# --------------------------------------------------------------------------------------------- tenancy

def test_tenant_b_sees_none_of_tenant_a_backups(tenants):
    a, b = tenants
    theirs = {"backuptargets": backup_target(a), "snapshots": ready_snapshot(a), "restores": finished_restore(a)}
    mine = {"backuptargets": backup_target(b), "snapshots": ready_snapshot(b), "restores": finished_restore(b)}
    client = api(b.owner)
    for prefix, obj in theirs.items():
        listed = ids(client.get(f"/v3/{prefix}/?page_size=1000"))
        assert obj.pk not in listed, f"tenant B lists tenant A's {prefix}"
        assert mine[prefix].pk in listed, f"tenant B does not list its own {prefix}"
        filtered = client.get(f"/v3/{prefix}/?cluster={a.cluster.pk}")
        assert filtered.status_code == 400 or not ids(filtered), f"{prefix} filtered by tenant A's cluster"
        assert client.get(f"/v3/{prefix}/{obj.pk}/").status_code == 404
    by_target = client.get(f"/v3/snapshots/?target={theirs['backuptargets'].pk}")
    assert by_target.status_code == 400 or theirs["snapshots"].pk not in ids(by_target)
    assert theirs["snapshots"].pk not in ids(client.get(f"/v3/snapshots/?search={a.cluster.name}"))

    admin = browser(b.owner)
    names = {"backuptarget": theirs["backuptargets"].name, "snapshot": theirs["snapshots"].name,
             "restore": theirs["restores"].snapshot_name}
    for (model, name), obj in zip(names.items(), theirs.values(), strict=True):
        page = admin.get(f"{ADMIN}/{model}/").content.decode()
        assert name not in page and f"{ADMIN}/{model}/{obj.pk}/change/" not in page, f"tenant B's {model} list"
        assert admin.get(f"{ADMIN}/{model}/{obj.pk}/change/").status_code == 404
        assert admin.get(f"{ADMIN}/{model}/?q={a.name}").status_code == 200
        assert name not in admin.get(f"{ADMIN}/{model}/?q={a.name}").content.decode()
    assert admin.get(f"{ADMIN}/snapshot/{theirs['snapshots'].pk}/restore/").status_code == 404
    own = admin.get(f"{ADMIN}/snapshot/").content.decode()
    assert mine["snapshots"].name in own, "tenant B's own snapshots are listed (the check can fail)"


def test_tenant_b_cannot_restore_or_delete_tenant_a_snapshot_by_id(tenants):
    a, b = tenants
    snapshot = ready_snapshot(a)
    client, admin = api(b.owner), browser(b.owner)
    assert restore(client, snapshot).status_code == 404
    assert client.delete(f"/v3/snapshots/{snapshot.pk}/").status_code == 404
    assert admin.post(f"{ADMIN}/snapshot/{snapshot.pk}/restore/", {"parts": "all"}).status_code == 404
    admin_delete_everywhere(admin, snapshot)
    with pytest.raises(access.WriteRefused):
        services.restore_snapshot(snapshot, user=b.owner)
    with pytest.raises(access.WriteRefused):
        services.delete_snapshots([snapshot], user=b.owner)
    assert restores_of(a.cluster) == 0 and state_of(a.cluster) == Cluster.State.ACTIVE
    assert not deletion_queued(snapshot)
    assert Snapshot.objects.filter(pk=snapshot.pk, state=Snapshot.State.READY).exists()


def test_tenant_b_cannot_point_a_target_at_tenant_a_cluster(tenants, admin_user):
    a, b = tenants
    client, admin = api(b.owner), browser(b.owner)
    body = {"name": "planted", "cluster": a.cluster.pk, "endpoint": UNREACHABLE_S3, "bucket": "b-bucket",
            "access_key": "AKIAPLANTEDKEY000001", "secret_key": "planted-secret-0123456789"}
    r = client.post("/v3/backuptargets/", body, format="json")
    assert r.status_code == 400 and "cluster" in r.json()["error"]["fields"], r.content[:300]

    own = backup_target(b)
    r = client.patch(f"/v3/backuptargets/{own.pk}/", {"cluster": a.cluster.pk}, format="json")
    assert r.status_code == 400, r.content[:300]
    with pytest.raises(access.WriteRefused):  # the write rule itself, whatever form or serializer is in front
        access.check_write(b.owner, "change", BackupTarget(pk=own.pk, name=own.name, cluster=a.cluster), before=own)

    form = {"name": "planted", "cluster": str(a.cluster.pk), "endpoint": UNREACHABLE_S3, "region": "us-east-1",
            "bucket": "b-bucket", "folder": "", "access_key": "AKIAPLANTEDKEY000001",
            "secret_key": "planted-secret-0123456789", "endpoint_ca": ""}
    r = admin.post(f"{ADMIN}/backuptarget/add/", form)
    assert r.status_code == 200 and 'class="errorlist' in r.content.decode()
    r = admin.post(f"{ADMIN}/backuptarget/{own.pk}/change/", {**form, "name": own.name, "access_key": "",
                                                              "secret_key": ""})
    assert r.status_code == 200 and 'class="errorlist' in r.content.decode()

    assert not BackupTarget.objects.filter(name="planted").exists()
    assert BackupTarget.objects.get(pk=own.pk).cluster_id == b.cluster.pk
    assert not BackupTarget.objects.filter(cluster=a.cluster).exists()
    # The same form from an admin is accepted (the refusals above are not a broken form).
    assert browser(admin_user).post(f"{ADMIN}/backuptarget/add/", form).status_code == 302
    assert BackupTarget.objects.filter(name="planted", cluster=a.cluster).exists()


def test_tenant_b_cannot_take_snapshots_to_tenant_a_target(tenants):
    a, b = tenants
    target = backup_target(a)
    client, admin = api(b.owner), browser(b.owner)

    r = take(client, b.cluster, {"target": target.name})
    assert r.status_code == 400 and "target" in r.json()["error"]["fields"], r.content[:300]
    with pytest.raises(services.BackupError, match="another cluster"):
        services.take_snapshot(b.cluster, user=b.owner, target=target)
    assert take(client, a.cluster, {"target": None}).status_code == 404
    assert admin.post(f"{ADMIN}/snapshot/take/{a.cluster.pk}/").status_code == 404

    r = client.post("/v3/snapshots/discover/", {"cluster": b.cluster.pk, "target": target.name}, format="json")
    assert r.status_code == 400, r.content[:300]
    r = client.post("/v3/snapshots/discover/", {"cluster": a.cluster.pk, "target": target.name}, format="json")
    assert r.status_code == 404, r.content[:300]
    with pytest.raises(services.BackupError, match="another cluster"):
        services.discover(b.cluster, target, user=b.owner)

    assert not Snapshot.objects.exists()
    assert not Job.objects.filter(kind__startswith="backups.").exists()


def test_discover_on_an_unreachable_cluster_is_a_conflict(tenants):
    """The cluster is asked its identity before the bucket is read: no answer is a 409 with the reason, not a 500."""
    a, _ = tenants
    r = api(a.owner).post("/v3/snapshots/discover/", {"cluster": a.cluster.pk, "target": backup_target(a).name},
                          format="json")
    assert r.status_code == 409, r.content[:300]
    assert "cannot be reached" in r.json()["error"]["message"]


def test_discover_tells_no_target_names_to_whoever_may_not_snapshot(tenants, django_user_model):
    """A cluster member may see the cluster, not its targets: a name that exists and one that does not get one answer."""
    a, _ = tenants
    member = bound(django_user_model, "ta-viewer", a.cluster, "cluster-member")
    answers = {name: api(member).post("/v3/snapshots/discover/", {"cluster": a.cluster.pk, "target": name},
                                      format="json") for name in (backup_target(a).name, "no-such-target")}
    assert {r.status_code for r in answers.values()} == {403}, {n: r.content[:200] for n, r in answers.items()}


def test_a_taken_fleet_wide_name_is_refused_not_a_server_error(tenants, admin_user):
    body = {"name": "fleet-s3", "cluster": None, "endpoint": UNREACHABLE_S3, "bucket": "fleet-bucket",
            "access_key": "AKIAFLEETACCESSKEY01", "secret_key": "fleet-secret-key-0123456789"}
    client = api(admin_user)
    assert client.post("/v3/backuptargets/", body, format="json").status_code == 201
    again = client.post("/v3/backuptargets/", body, format="json")
    assert again.status_code == 400 and "name" in again.json()["error"]["fields"], again.content[:300]
    a, _ = tenants
    own = backup_target(a)
    moved = client.patch(f"/v3/backuptargets/{own.pk}/", {"name": "fleet-s3", "cluster": None}, format="json")
    assert moved.status_code == 400, moved.content[:300]
    assert BackupTarget.objects.filter(name="fleet-s3").count() == 1
    assert BackupTarget.objects.get(pk=own.pk).cluster_id == a.cluster.pk


# --------------------------------------------------------------------------------------------- secret keys

def _all_keys(*tenants_: Tenant) -> list[str]:
    return [key for t in tenants_ for key in target_keys(t)]


def _assert_no_keys(text: str, keys: list[str], where: str) -> None:
    for key in keys:
        assert key not in text, f"{where} shows a backup target key"


def test_api_never_returns_target_keys(tenants):
    a, _ = tenants
    access_key, secret_key = target_keys(a)
    client = api(a.owner)
    created = client.post("/v3/backuptargets/", {
        "name": "made", "cluster": a.cluster.pk, "endpoint": UNREACHABLE_S3, "bucket": "ta-made",
        "access_key": access_key, "secret_key": secret_key}, format="json")
    assert created.status_code == 201, created.content[:300]
    body = created.json()
    assert body["access_key"] and body["secret_key"], "the keys are shown masked, not left out"
    target = BackupTarget.objects.get(pk=body["id"])
    assert (target.access_key, target.secret_key) == (access_key, secret_key), "the keys were stored"

    new_secret = "ta-rotated-secret-Pq4nRt8vWx2z"
    changed = client.patch(f"/v3/backuptargets/{target.pk}/", {"secret_key": new_secret}, format="json")
    assert changed.status_code == 200 and BackupTarget.objects.get(pk=target.pk).secret_key == new_secret
    snapshot = ready_snapshot(a)
    Snapshot.objects.filter(pk=snapshot.pk).update(target=target)
    keys = [access_key, secret_key, new_secret]
    for response in (created, changed, client.get(f"/v3/backuptargets/{target.pk}/"),
                     client.get("/v3/backuptargets/?page_size=1000"), client.get("/v3/backuptargets/?search=made"),
                     client.get(f"/v3/snapshots/{snapshot.pk}/"), client.get("/v3/snapshots/"),
                     client.get("/v3/auditlog/?page_size=1000")):
        assert response.status_code == 200 or response is created, response.content[:300]
        _assert_no_keys(response.content.decode(), keys, response.wsgi_request.path)


def test_admin_pages_never_show_target_keys(tenants, admin_user):
    a, b = tenants
    targets = [backup_target(a), backup_target(b)]
    keys = _all_keys(a, b)
    for user in (admin_user, a.owner):
        admin = browser(user)
        pages = [f"{ADMIN}/backuptarget/", f"{ADMIN}/backuptarget/?q=s3", f"{ADMIN}/backuptarget/add/"]
        pages += [f"{ADMIN}/backuptarget/{t.pk}/{page}/" for t in targets for page in ("change", "history", "delete")]
        for url in pages:
            page = admin.get(url)
            assert page.status_code in (200, 404), (url, page.status_code)
            _assert_no_keys(page.content.decode(), keys, url)
        shown = admin.get(f"{ADMIN}/backuptarget/{targets[0].pk}/change/").content.decode()
        assert targets[0].name in shown, "the change page is the target's (the check can fail)"

    # A form shown again with an error does not echo the keys just typed either.
    typed = {"name": "typed", "cluster": str(a.cluster.pk), "endpoint": UNREACHABLE_S3, "region": "",
             "bucket": "NOT A BUCKET", "folder": "", "access_key": keys[0], "secret_key": keys[1], "endpoint_ca": ""}
    again = browser(a.owner).post(f"{ADMIN}/backuptarget/add/", typed)
    assert again.status_code == 200 and 'class="errorlist' in again.content.decode()
    _assert_no_keys(again.content.decode(), keys, "the add form shown again")


def test_audit_rows_never_hold_target_keys(tenants):
    a, _ = tenants
    access_key, secret_key = target_keys(a)
    rotated = "ta-rotated-secret-Pq4nRt8vWx2z"
    client, admin = api(a.owner), browser(a.owner)
    made = client.post("/v3/backuptargets/", {
        "name": "made", "cluster": a.cluster.pk, "endpoint": UNREACHABLE_S3, "bucket": "ta-made",
        "access_key": access_key, "secret_key": secret_key}, format="json").json()
    client.patch(f"/v3/backuptargets/{made['id']}/", {"access_key": rotated}, format="json")
    form = {"name": "made-in-admin", "cluster": str(a.cluster.pk), "endpoint": UNREACHABLE_S3,
            "region": "us-east-1", "bucket": "ta-admin", "folder": "", "access_key": access_key,
            "secret_key": secret_key, "endpoint_ca": ""}
    assert admin.post(f"{ADMIN}/backuptarget/add/", form).status_code == 302
    in_admin = BackupTarget.objects.get(name="made-in-admin")
    assert admin.post(f"{ADMIN}/backuptarget/{in_admin.pk}/change/",
                      {**form, "access_key": "", "secret_key": rotated}).status_code == 302
    assert BackupTarget.objects.get(pk=in_admin.pk).access_key == access_key, "an empty key field keeps the key"
    assert BackupTarget.objects.get(pk=in_admin.pk).secret_key == rotated
    client.delete(f"/v3/backuptargets/{made['id']}/")

    rows = AuditEvent.objects.filter(object_repr__in=["made", "made-in-admin"])
    assert rows.count() >= 5, "every write of a target is audited"
    assert any("secret_key" in row.changes for row in rows), "a key change is recorded, as changed"
    for row in rows:
        _assert_no_keys(json.dumps([row.changes, row.message, row.object_repr]), [access_key, secret_key, rotated],
                        f"audit row {row.action}")
    for entry in LogEntry.objects.all():
        _assert_no_keys(f"{entry.change_message} {entry.object_repr}", [access_key, secret_key, rotated],
                        "the admin's own history")


def test_discovered_snapshots_carry_no_keys(tenants):
    """A bucket's manifests are recorded without anything secret the image may have written next to them."""
    a, _ = tenants
    target = backup_target(a)
    manifest = {"name": "ta-cluster-found-1", "cluster": "uid-a", "size": 10, "sha256": "a" * 64,
                "kubernetes_version": "v1.15.11", "inventory": {"secret": target.secret_key}}

    class FakeBucket:
        def __init__(self, _target):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def manifests(self):
            return [manifest]

    with mock.patch("backups.snapshots.cluster_identity", return_value="uid-a"), \
            mock.patch("backups.s3.Bucket", FakeBucket):
        r = api(a.owner).post("/v3/snapshots/discover/", {"cluster": a.cluster.pk, "target": target.name},
                              format="json")
    assert r.status_code == 200, r.content[:300]
    found = Snapshot.objects.get(name="ta-cluster-found-1")
    assert found.trigger == Snapshot.Trigger.DISCOVERED and "inventory" not in found.manifest
    detail = api(a.owner).get(f"/v3/snapshots/{found.pk}/").content.decode()
    _assert_no_keys(detail, list(target_keys(a)), "a discovered snapshot")
