"""RQ entry points for backups: thin runners over snapshots.py and restore.py."""
from __future__ import annotations

from backups.models import Restore, Snapshot
from portal import jobs


class SnapshotRunner(jobs.JobRunner):
    """Takes one snapshot (etcd on an etcd node, or a resource backup of an imported cluster)."""

    kind = "backups.snapshot"
    queue = "backups"
    timeout = 3600
    description = "Take a snapshot"

    def run(self) -> dict:
        from backups import snapshots

        snapshot = Snapshot.objects.select_related("cluster", "target").filter(pk=self.params.get("snapshot_id")).first()
        if snapshot is None:
            raise jobs.JobFailed("the snapshot this job was for no longer exists")
        return snapshots.take(snapshot, reporter=self)

    @classmethod
    def on_lost(cls, job, reason: str) -> None:
        Snapshot.objects.filter(pk=(job.params or {}).get("snapshot_id"),
                                state__in=(Snapshot.State.PENDING, Snapshot.State.SAVING)).update(
            state=Snapshot.State.FAILED, reason=reason)


class RestoreRunner(jobs.JobRunner):
    """Restores a snapshot onto its cluster: verify, reset etcd, rejoin, version, config, report."""

    kind = "backups.restore"
    queue = "backups"
    timeout = 24 * 3600
    description = "Restore a snapshot"

    def run(self) -> dict:
        from backups import restore

        row = Restore.objects.filter(pk=self.params.get("restore_id")).first()
        if row is None:
            raise jobs.JobFailed("the restore this job was for no longer exists")
        return restore.run(row, reporter=self)

    @classmethod
    def on_lost(cls, job, reason: str) -> None:
        from django.utils import timezone

        from clusters.models import Cluster

        row = Restore.objects.filter(pk=(job.params or {}).get("restore_id"),
                                     state__in=(Restore.State.PENDING, Restore.State.RUNNING)).first()
        if row is None:
            return
        Restore.objects.filter(pk=row.pk).update(state=Restore.State.FAILED, reason=reason, finished_at=timezone.now())
        Cluster.objects.filter(pk=row.cluster_id, state=Cluster.State.RESTORING).update(
            state=Cluster.State.ACTIVE, state_reason=f"Restore of {row.snapshot_name} stopped: {reason}")


class DeleteRunner(jobs.JobRunner):
    """Deletes snapshots from the nodes, the bucket, the cluster's records and Corral."""

    kind = "backups.delete"
    queue = "backups"
    timeout = 1800
    description = "Delete snapshots"

    def run(self) -> dict:
        from backups import snapshots

        rows = list(Snapshot.objects.select_related("cluster", "target").filter(pk__in=self.params.get("snapshot_ids") or []))
        return snapshots.delete(rows, reporter=self)


class RecurringRunner(jobs.JobRunner):
    """Every few minutes: queue a recurring snapshot of each cluster whose interval has passed."""

    kind = "backups.recurring"
    queue = "backups"
    description = "Queue recurring snapshots"

    def run(self) -> dict:
        from backups import services, snapshots

        taken = services.schedule_recurring()
        if taken:
            self.log("Queued " + ", ".join(f"{s.cluster.name}: {s.name}" for s in taken))
        changes = snapshots.reconcile_fleet(reporter=self)
        return {"queued": [s.name for s in taken], **changes}


RUNNERS = (SnapshotRunner, RestoreRunner, DeleteRunner, RecurringRunner)
