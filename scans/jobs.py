"""RQ entry points for scans: run one scan, and start the scans of due schedules."""
from __future__ import annotations

from django.db import transaction

from clusters import kube
from portal import jobs
from scans import engine, services
from scans.models import Scan


class ScanRunner(jobs.JobRunner):
    """Runs kube-bench on the nodes and the policy checks, stores one result per check, then alerts."""

    kind = "scans.scan"
    queue = "scans"
    timeout = 1800
    description = "CIS scan of a cluster"

    def run(self) -> dict:
        scan = Scan.objects.select_related("cluster", "profile", "schedule").filter(pk=self.job.target_id).first()
        if scan is None:
            raise jobs.JobFailed("the scan was deleted before it ran")
        Scan.objects.filter(pk=scan.pk).update(state=Scan.State.RUNNING)
        self.progress(5, f"scanning {scan.cluster.name} with {scan.profile_name}")
        try:
            engine.evaluate(scan, reporter=self)
        except jobs.JobCancelled:
            engine.fail(scan, "cancelled on request")
            raise
        except (kube.ClusterError, kube.KubeconfigError) as exc:
            engine.fail(scan, f"The cluster could not be scanned: {getattr(exc, 'reason', exc)}")
            self._after(scan)
            raise jobs.JobFailed(f"the cluster could not be scanned: {getattr(exc, 'reason', exc)}") from None
        except Exception as exc:
            engine.fail(scan, f"The scan stopped: {type(exc).__name__}: {exc}")
            self._after(scan)
            raise
        self._after(scan)
        scan.refresh_from_db()
        return {"scan": scan.pk, "state": scan.state, "score": scan.score, **scan.counts}

    def _after(self, scan: Scan) -> None:
        scan.refresh_from_db()
        self.progress(95, "alerts and retention")
        services.send_alerts(scan, reporter=self)
        if scan.schedule_id:
            with transaction.atomic():
                gone = services.prune(scan.schedule)
            if gone:
                self.log(f"deleted {gone} older scheduled report(s) (keep the last {scan.schedule.keep_last})")


class DispatchSchedulesRunner(jobs.JobRunner):
    """Starts the scans of schedules whose cron time has come (run by the scheduler every minute)."""

    kind = "scans.dispatch"
    queue = "scans"
    description = "Start scheduled CIS scans"

    def run(self) -> dict:
        started = services.dispatch_due()
        if started:
            self.log(f"started {len(started)} scheduled scan(s)")
        return {"started": [s.pk for s in started]}
