"""Snapshots other features take: before a version upgrade (inside its job) and after an import."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction

from backups.models import Snapshot
from clusters.models import Cluster, Upgrade
from portal import audit
from portal.jobs import JobFailed, Reporter


def snapshot_before_upgrade(upgrade: Upgrade, reporter: Reporter) -> Snapshot:
    """Take a snapshot in the upgrade's own job, before any node is touched; a failure stops the upgrade."""
    from backups import services, snapshots

    cluster = upgrade.cluster
    try:
        target = services.default_target(cluster)
    except services.BackupError as exc:
        raise JobFailed(f"the snapshot before the upgrade could not be taken: {exc}; no node was changed") from None
    with transaction.atomic():
        snapshot = Snapshot.objects.create(
            cluster=cluster, name=services.snapshot_name(cluster, Snapshot.Trigger.BEFORE_UPGRADE),
            kind=services.kind_for(cluster), trigger=Snapshot.Trigger.BEFORE_UPGRADE, target=target,
            created_by=upgrade.created_by, job_id=upgrade.job_id)
        audit.record("snapshot", cluster, user=upgrade.created_by,
                     message=f"snapshot {snapshot.name} before {upgrade}")
    reporter.log(f"Taking snapshot {snapshot.name} before the upgrade")
    try:
        snapshots.take(snapshot, reporter)
    except JobFailed as exc:
        raise JobFailed(f"the snapshot before the upgrade failed: {exc}; no node was changed") from None
    snapshot.refresh_from_db()
    return snapshot


def snapshot_after_import(cluster: Cluster, user=None) -> Snapshot | None:
    """Queue the first snapshot of an rke or k3s cluster Corral just imported (SPEC §3)."""
    from backups import services

    if cluster.kind not in services.ETCD_KINDS or not getattr(settings, "SNAPSHOT_AFTER_IMPORT", True):
        return None
    try:
        return services.take_snapshot(cluster, trigger=Snapshot.Trigger.AFTER_IMPORT, target=None)
    except services.BackupError:
        return None
