"""The portal's own jobs: a diagnostic that proves the job system works, and job pruning."""
from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from portal.jobs import JobFailed, JobRunner
from portal.models import Job


class DiagnoseRunner(JobRunner):
    """Walks through a few steps with log lines and progress, so an operator can test the workers."""

    kind = "portal.diagnose"
    queue = "default"
    description = "Check that workers pick up jobs and report progress"

    def run(self) -> dict:
        steps = max(1, min(100, int(self.params.get("steps", 3))))
        delay = max(0.0, min(60.0, float(self.params.get("delay", 0.2))))
        for step in range(1, steps + 1):
            self.log(f"step {step} of {steps}")
            time.sleep(delay)
            self.progress(step * 100 // steps, f"step {step} of {steps}")
            if self.params.get("fail_at") == step:
                raise JobFailed(f"failed at step {step} as requested")
            if self.params.get("crash_at") == step:
                raise RuntimeError(f"diagnostic crash at step {step}, to test how failures are reported")
        return {"steps": steps, "worker": self.job.worker}


class PruneJobsRunner(JobRunner):
    """Deletes finished jobs older than the retention period, keeping the table small."""

    kind = "portal.prune_jobs"
    queue = "default"
    description = "Delete finished jobs older than CORRAL_JOB_RETENTION_DAYS"

    def run(self) -> dict:
        days = int(getattr(settings, "JOB_RETENTION_DAYS", 30))
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = Job.objects.filter(status__in=Job.FINISHED, finished_at__lt=cutoff).delete()
        self.log(f"deleted {deleted} rows of jobs finished before {cutoff:%Y-%m-%d}")
        return {"deleted": deleted}
