"""RQ entry points for clusters: thin runners over inventory and upgrades services."""
from __future__ import annotations

from django.conf import settings

from clusters import inventory
from clusters.models import Cluster
from portal import jobs


class SyncRunner(jobs.JobRunner):
    """Reads nodes and versions of one cluster or a batch of clusters."""

    kind = "clusters.sync"
    queue = "clusters"
    timeout = 1800
    description = "Refresh cluster inventory"

    def run(self) -> dict:
        ids = self.params.get("cluster_ids") or ([self.job.cluster_id] if self.job.cluster_id else [])
        if not ids:
            raise jobs.JobFailed("no cluster to sync")
        self.progress(5, f"reading {len(ids)} cluster(s)")
        report = inventory.sync_clusters(ids, reporter=self)
        if report.unavailable and len(ids) == 1:
            self.log(f"unavailable: {Cluster.objects.get(pk=ids[0]).state_reason}", "warning")
        self.log(f"{report.reachable}/{report.clusters} reachable, {report.nodes_written} nodes written, "
                 f"{report.nodes_deleted} removed (read {report.fetch_seconds} s, write {report.write_seconds} s)")
        return report.as_dict()


class SyncFleetRunner(jobs.JobRunner):
    """Splits the whole fleet into batches, one sync job each, so every worker can take a share."""

    kind = "clusters.sync_fleet"
    queue = "clusters"
    description = "Refresh the inventory of every cluster"

    def run(self) -> dict:
        size = int(self.params.get("batch_size") or getattr(settings, "CLUSTER_SYNC_BATCH", 100))
        ids = list(Cluster.objects.order_by("pk").values_list("pk", flat=True))
        batches = [ids[i:i + size] for i in range(0, len(ids), size)]
        for batch in batches:
            jobs.enqueue(SyncRunner.kind, params={"cluster_ids": batch})
        self.log(f"queued {len(batches)} sync job(s) for {len(ids)} clusters")
        return {"clusters": len(ids), "batches": len(batches)}
