"""Snapshots and restores: the service functions admin, API, upgrades, imports and the scheduler call.

    snap = take_snapshot(cluster, user=request.user)                     # queues backups.snapshot
    restore = restore_snapshot(snap, parts="all", user=request.user)     # queues backups.restore
    delete_snapshots([snap], user=request.user)                          # queues backups.delete
    found = discover(cluster, target, user=request.user)                 # manifests in a bucket

Every function passes the permission layer: ``snapshot`` and ``restore`` on the cluster are separate
actions; deleting needs ``delete`` on the snapshot. Refusals raise ``BackupError`` with the reason
and change nothing.
"""
from __future__ import annotations

import re
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from backups.models import BackupTarget, Restore, Snapshot
from clusters.models import Cluster, Upgrade
from portal import audit, jobs
from portal.models import Job
from rbac import access

ETCD_KINDS = (Cluster.Kind.RKE, Cluster.Kind.K3S)
T = Snapshot.Trigger


class BackupError(ValueError):
    """A snapshot or restore that cannot be started; the message says why (a 400 in the API)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


def _user(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def kind_for(cluster: Cluster) -> str:
    return Snapshot.Kind.ETCD if cluster.kind in ETCD_KINDS else Snapshot.Kind.RESOURCES


def backup_settings(cluster: Cluster) -> dict:
    from clusters import config, schema

    return dict(config.current_document(cluster).get("etcd_backup") or schema.defaults()["etcd_backup"])


def target_named(cluster: Cluster, name: str | None) -> BackupTarget | None:
    """The cluster's own target of that name, else the fleet-wide one; None for an empty name."""
    if not name:
        return None
    target = (BackupTarget.objects.filter(cluster=cluster, name=name).first()
              or BackupTarget.objects.filter(cluster__isnull=True, name=name).first())
    if target is None:
        raise BackupError(f'there is no backup target "{name}" for {cluster.name}', "target")
    return target


def default_target(cluster: Cluster) -> BackupTarget | None:
    """The target named by the config's etcd_backup.target (None: the etcd nodes' disks only)."""
    return target_named(cluster, backup_settings(cluster).get("target"))


def check_target(user, cluster: Cluster, target: BackupTarget | None) -> None:
    """A target must belong to this cluster (or the fleet) and be one the caller may see."""
    if target is None:
        return
    if target.cluster_id not in (None, cluster.pk):
        raise BackupError(f"backup target {target.name} belongs to another cluster", "target")
    if user is not None and not access.can(user, "view", target):
        # Its keys reach the cluster's nodes as a Secret, readable by whoever runs that cluster: a fleet-wide
        # target serves only clusters whose users may see it (and so its keys).
        raise access.WriteRefused(f"You may not use backup target {target.name}"
                                  + (" (a fleet-wide target: its keys would reach this cluster's nodes)"
                                     if target.cluster_id is None else "") + ".")


def snapshot_name(cluster: Cluster, trigger: str, when=None) -> str:
    """``<cluster>-<manual|recurring>-<YYYYMMDD-HHMMSS>``, unique within the cluster."""
    when = when or timezone.now()
    word = "recurring" if trigger == T.RECURRING else "manual"
    base = f"{cluster.name}-{word}-{when:%Y%m%d-%H%M%S}"
    name, n = base, 1
    while Snapshot.objects.filter(cluster=cluster, name=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _busy(cluster: Cluster) -> str:
    """Why a snapshot or restore cannot start now ("" when it can)."""
    if Restore.objects.filter(cluster=cluster, state__in=(Restore.State.PENDING, Restore.State.RUNNING)).exists():
        return f"{cluster.name} is being restored"
    return ""


@transaction.atomic
def take_snapshot(cluster: Cluster, *, user=None, trigger: str = T.MANUAL, target: BackupTarget | str | None = "",
                  filters: dict | None = None) -> Snapshot:
    """Record a snapshot and queue the job that takes it. ``target``: a BackupTarget, a name, None for
    the nodes' disks only, or "" for the config's default. ``filters`` (resource backups only):
    include_namespaces, exclude_namespaces, include_kinds, exclude_kinds."""
    from backups.jobs import SnapshotRunner

    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    access.require(user, "snapshot", cluster)
    if isinstance(target, str):
        target = default_target(cluster) if target == "" else target_named(cluster, target)
    check_target(user, cluster, target)
    reason = _busy(cluster)
    if reason:
        raise BackupError(f"A snapshot cannot be taken now: {reason}.")
    if cluster.state in (Cluster.State.PROVISIONING, Cluster.State.UNAVAILABLE) and trigger == T.MANUAL:
        raise BackupError(f"{cluster.name} is {cluster.get_state_display()}"
                          + (f" ({cluster.state_reason})" if cluster.state_reason else "") + "; a snapshot needs "
                          "its API server.")
    kind = kind_for(cluster)
    if filters and kind != Snapshot.Kind.RESOURCES:
        raise BackupError("Namespace and kind filters apply to resource backups of imported clusters only; an etcd "
                          "snapshot holds the whole cluster.", "filters")
    snapshot = Snapshot.objects.create(
        cluster=cluster, name=snapshot_name(cluster, trigger), kind=kind, trigger=trigger, target=target,
        created_by=_user(user), manifest={"filters": filters} if filters else {})
    job = jobs.enqueue(SnapshotRunner.kind, target=snapshot, cluster=cluster, user=user,
                       params={"snapshot_id": snapshot.pk})
    snapshot.job = job
    snapshot.save(update_fields=["job"])
    audit.record("snapshot", cluster, user=user, message=f"snapshot {snapshot.name} ({snapshot.get_trigger_display()}, "
                 f"{target.location if target else 'etcd nodes only' if kind == Snapshot.Kind.ETCD else 'Corral'})")
    return snapshot


@transaction.atomic
def restore_snapshot(snapshot: Snapshot, *, parts: str = Restore.Parts.ETCD, user=None) -> Restore:
    """Queue a restore of ``snapshot`` onto its cluster. Refused (nothing changes) when the snapshot is not
    Ready or not complete, the cluster is busy, or the caller lacks ``restore`` on the cluster."""
    from backups.jobs import RestoreRunner

    cluster = Cluster.objects.select_for_update().get(pk=snapshot.cluster_id)
    snapshot = Snapshot.objects.select_for_update().get(pk=snapshot.pk)
    access.require(user, "restore", cluster)
    if user is not None and not access.can(user, "view", snapshot):
        raise access.WriteRefused("You may not see this snapshot.")
    if parts not in Restore.Parts.values:
        raise BackupError(f'parts must be one of {", ".join(Restore.Parts.values)} '
                          '("etcd", "kubernetes" = etcd and version, "all" = etcd, version and config)', "parts")
    if snapshot.state != Snapshot.State.READY:
        raise BackupError(f"Snapshot {snapshot.name} is {snapshot.get_state_display()}"
                          + (f" ({snapshot.reason})" if snapshot.reason else "") + "; only a Ready snapshot can be restored.")
    if not snapshot.sha256 or not snapshot.size:
        raise BackupError(f"Snapshot {snapshot.name} has no recorded size and SHA-256, so it could not be verified; "
                          "it is not restored.")
    if snapshot.kind == Snapshot.Kind.RESOURCES and parts != Restore.Parts.ETCD:
        raise BackupError("A resource backup of an imported cluster restores its objects only; its Kubernetes version "
                          "and config are managed outside Corral.", "parts")
    if parts != Restore.Parts.ETCD and not snapshot.kubernetes_version:
        raise BackupError(f"Snapshot {snapshot.name} does not say which Kubernetes version it was taken on.", "parts")
    if parts == Restore.Parts.ALL and not snapshot.config_document:
        raise BackupError(f"Snapshot {snapshot.name} holds no cluster config.", "parts")
    reason = _busy(cluster)
    running = cluster.upgrades.filter(state__in=(Upgrade.State.RUNNING, Upgrade.State.PAUSED)).first()
    if running is not None:
        reason = f"{running} is {running.state}; resume or cancel it first"
    saving = cluster.snapshots.filter(state__in=(Snapshot.State.PENDING, Snapshot.State.SAVING)).exclude(
        pk=snapshot.pk).first()
    if saving is not None:
        reason = reason or f"snapshot {saving.name} is being taken"
    if reason:
        raise BackupError(f"{cluster.name} cannot be restored now: {reason}.")
    restore = Restore.objects.create(cluster=cluster, snapshot=snapshot, snapshot_name=snapshot.name, parts=parts,
                                     created_by=_user(user))
    job = jobs.enqueue(RestoreRunner.kind, target=restore, cluster=cluster, user=user,
                       params={"restore_id": restore.pk})
    restore.job = job
    restore.save(update_fields=["job"])
    Cluster.objects.filter(pk=cluster.pk).update(state=Cluster.State.RESTORING,
                                                 state_reason=f"Restore of {snapshot.name} queued")
    audit.record("restore", cluster, user=user, message=f"restore {snapshot.name} ({restore.get_parts_display()})",
                 changes={"snapshot": [None, snapshot.name], "parts": [None, parts]})
    return restore


@transaction.atomic
def delete_snapshots(snapshots: list[Snapshot], *, user=None) -> Job | None:
    """Delete snapshots everywhere they are (nodes, bucket, ETCDSnapshotFile records, Corral): one job."""
    from backups.jobs import DeleteRunner

    if not snapshots:
        return None
    clusters = {s.cluster_id for s in snapshots}
    if len(clusters) != 1:
        raise BackupError("Delete the snapshots of one cluster at a time.")
    for snapshot in snapshots:
        access.check_write(user, "delete", snapshot)
    cluster = snapshots[0].cluster
    job = jobs.enqueue(DeleteRunner.kind, cluster=cluster, user=user,
                       params={"snapshot_ids": [s.pk for s in snapshots]})
    audit.record("delete", cluster, user=user, message="delete snapshot(s) " + ", ".join(s.name for s in snapshots))
    return job


def discover(cluster: Cluster, target: BackupTarget, *, user=None) -> list[Snapshot]:
    """Record the snapshots of this cluster found in a bucket (its portal records may have been lost)."""
    from backups import s3
    from backups.snapshots import cluster_identity
    from clusters.kube import KubeconfigError

    access.require(user, "snapshot", cluster)
    check_target(user, cluster, target)
    try:
        uid = cluster_identity(cluster)
    except jobs.JobFailed as exc:  # an unreachable cluster is a refusal with its reason (409), not a 500
        raise BackupError(str(exc)) from None
    except KubeconfigError as exc:
        raise BackupError(f"{cluster.name} cannot be reached: {exc}") from None
    with s3.Bucket(target) as bucket:
        manifests = bucket.manifests()
    found = []
    with transaction.atomic():
        for manifest in manifests:
            if manifest.get("cluster") != uid:
                continue
            name = str(manifest["name"])[:200]
            if Snapshot.objects.filter(cluster=cluster, name=name).exists():
                continue
            found.append(Snapshot.objects.create(
                cluster=cluster, name=name, trigger=T.DISCOVERED, state=Snapshot.State.READY, target=target,
                kind=Snapshot.Kind.RESOURCES if str(manifest.get("format", "")).startswith("corral.resource-backup")
                else Snapshot.Kind.ETCD,
                s3_location=f"{target.location}/{name}", node=str(manifest.get("node") or ""),
                cluster_uid=uid, **fields_from_manifest(manifest), created_by=_user(user)))
        if found:
            audit.record("snapshot", cluster, user=user,
                         message=f"found {len(found)} snapshot(s) in {target.location}: "
                                 + ", ".join(s.name for s in found))
    return found


def fields_from_manifest(manifest: dict) -> dict:
    """Snapshot fields a manifest fills in (the inventory stays in the manifest)."""
    etcd = manifest.get("etcd") or {}
    config_version = manifest.get("config_version")
    return {
        "kubernetes_version": str(manifest.get("kubernetes_version") or ""),
        "config_version": int(config_version) if str(config_version or "").isdigit() else None,
        "config_document": manifest.get("config") if isinstance(manifest.get("config"), dict) else {},
        "etcd_revision": etcd.get("revision") if isinstance(etcd.get("revision"), int) else None,
        "size": manifest.get("size") if isinstance(manifest.get("size"), int) else None,
        "sha256": str(manifest.get("sha256") or "")[:64] if re.fullmatch(r"[0-9a-f]{64}", str(
            manifest.get("sha256") or "")) else "",
        "manifest": {k: v for k, v in manifest.items() if k != "inventory"},
        "taken_at": _parse_time(manifest.get("created")),
    }


def _parse_time(value):
    from django.utils.dateparse import parse_datetime

    try:
        return parse_datetime(str(value)) if value else None
    except ValueError:
        return None


# ---------------------------------------------------------------------- recurring snapshots
def due_for_recurring(now=None) -> list[Cluster]:
    """Clusters whose etcd_backup is enabled and whose last recurring snapshot is older than the interval."""
    now = now or timezone.now()
    due = []
    for cluster in Cluster.objects.exclude(state__in=(Cluster.State.PROVISIONING,)):
        settings = backup_settings(cluster)
        if not settings.get("enabled", True):
            continue
        last = cluster.snapshots.filter(trigger=T.RECURRING).exclude(state=Snapshot.State.FAILED).order_by(
            "-created_at").first()
        interval = timedelta(hours=int(settings.get("interval_hours") or 12))
        if last is None or now - last.created_at >= interval:
            due.append(cluster)
    return due


def schedule_recurring(now=None) -> list[Snapshot]:
    """Queue a recurring snapshot for each cluster that is due (the scheduler calls this every minute)."""
    taken = []
    for cluster in due_for_recurring(now):
        if cluster.state in (Cluster.State.UNAVAILABLE, Cluster.State.RESTORING):
            continue
        try:
            taken.append(take_snapshot(cluster, trigger=T.RECURRING))
        except BackupError:
            continue
    return taken


def beyond_retention(cluster: Cluster) -> list[Snapshot]:
    """Recurring snapshots past the retention count, oldest last kept; manual ones are never counted."""
    keep = int(backup_settings(cluster).get("retention") or 6)
    recurring = list(cluster.snapshots.filter(trigger=T.RECURRING, state=Snapshot.State.READY).order_by(
        "-created_at", "-id"))
    return recurring[keep:]
