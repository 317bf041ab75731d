"""Scan operations shared by admin, API and jobs: start a scan, dispatch schedules, keep the last N, alert.

Every write passes :func:`rbac.access.check_write`: running a scan is the ``scan`` action on the scan as
it will be saved (so on its cluster: ``scan.scan`` there, which cluster members hold), and the profile it
points to must be one the caller may see.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from portal import audit, jobs
from rbac import access
from scans import benchmarks, cron
from scans.models import Scan, ScanAlert, ScanProfile, ScanSchedule

logger = logging.getLogger("corral.scans")


class ScanRefused(Exception):
    """The scan cannot start: a benchmark for another distribution, or one is already running."""


def check_profile_fits(cluster, profile: ScanProfile) -> None:
    distribution = benchmarks.distribution_of(cluster.kind, cluster.kubernetes_version or "")
    bench = benchmarks.get(profile.benchmark)
    if distribution not in bench.distributions:
        fitting = ", ".join(b.id for b in benchmarks.benchmarks_for(distribution)) or "none"
        raise ScanRefused(f"{bench.id} is written for {', '.join(bench.distributions)}; {cluster.name} is a "
                          f"{distribution} cluster (benchmarks for it: {fitting}).")


def default_profile(cluster) -> ScanProfile | None:
    distribution = benchmarks.distribution_of(cluster.kind, cluster.kubernetes_version or "")
    preferred = {"rke": "rke-cis-1.4-permissive", "k3s": "k3s-cis-1.8-permissive",
                 "rke2": "rke2-cis-1.8-permissive"}.get(distribution, "cis-1.8-permissive")
    return ScanProfile.objects.filter(name=preferred).first()


def may_scan(user, cluster) -> bool:
    """Whether ``user`` may start a scan of ``cluster``: the rule :func:`request_scan` enforces, ``scan`` on a
    scan in that cluster (``scan.scan`` in the cluster's scope, which cluster members hold). The cluster API's
    ``capabilities.scan`` and the admin's "Run a scan" button ask this."""
    return access.can(user, "scan", Scan(cluster=cluster))


def request_scan(cluster, profile: ScanProfile | None = None, *, user=None, schedule: ScanSchedule | None = None) -> Scan:
    """Start a scan of ``cluster`` with ``profile`` (a job with progress); returns the Scan row."""
    from scans.jobs import ScanRunner

    profile = profile or (schedule.profile if schedule else None) or default_profile(cluster)
    if profile is None:
        raise ScanRefused("No scan profile fits this cluster; create one first.")
    scan = Scan(cluster=cluster, profile=profile, profile_name=profile.name, benchmark=profile.benchmark,
                trigger=Scan.Trigger.SCHEDULED if schedule else Scan.Trigger.MANUAL, schedule=schedule,
                created_by=user if user is not None and user.is_authenticated else None)
    with transaction.atomic():
        access.check_write(user, "scan", scan)
        check_profile_fits(cluster, profile)
        if Scan.objects.select_for_update().filter(cluster=cluster, state__in=(Scan.State.QUEUED, Scan.State.RUNNING)).exists():
            raise ScanRefused(f"A scan of {cluster.name} is already queued or running.")
        scan.save()
        access.check_write(user, "scan", scan)
        job = jobs.enqueue(ScanRunner.kind, target=scan, user=user, cluster=cluster)
        scan.job = job
        scan.save(update_fields=["job"])
        audit.record("scan", scan, user=user, message=f"{profile.name} ({scan.get_trigger_display().lower()})")
    return scan


# --- schedules -------------------------------------------------------------------------------------------------

def next_run(schedule: ScanSchedule, after=None):
    return cron.next_after(schedule.cron, after or timezone.now())


def dispatch_due(now=None) -> list[Scan]:
    """Start the scans of every schedule that is due (the scheduler's periodic job calls this)."""
    now = now or timezone.now()
    started = []
    for schedule in ScanSchedule.objects.filter(enabled=True).select_related("cluster", "profile"):
        if schedule.next_run_at is None:
            ScanSchedule.objects.filter(pk=schedule.pk).update(next_run_at=next_run(schedule, now))
            continue
        if schedule.next_run_at > now:
            continue
        ScanSchedule.objects.filter(pk=schedule.pk).update(last_run_at=now, next_run_at=next_run(schedule, now))
        try:
            started.append(request_scan(schedule.cluster, schedule.profile, schedule=schedule))
        except ScanRefused as exc:
            logger.info("schedule %s: no scan started: %s", schedule.pk, exc)
    return started


def prune(schedule: ScanSchedule) -> int:
    """Keep the newest ``keep_last`` finished scans of a schedule; delete the older ones."""
    finished = Scan.objects.filter(schedule=schedule).exclude(state__in=(Scan.State.QUEUED, Scan.State.RUNNING))
    old = list(finished.order_by("-created_at", "-pk").values_list("pk", flat=True)[schedule.keep_last:])
    if old:
        Scan.objects.filter(pk__in=old).delete()
    return len(old)


# --- alerts ----------------------------------------------------------------------------------------------------

def report_url(scan: Scan) -> str:
    base = getattr(settings, "CORRAL_URL", "http://127.0.0.1:8000").rstrip("/")
    return base + reverse("admin:scans_scan_report", args=[scan.pk])


def alert_message(scan: Scan) -> tuple[str, str, dict[str, str]]:
    """(subject, text, fields) of the alert for a finished scan."""
    c = scan.counts
    outcome = {"passed": "passed", "failed": "FAILED", "error": "could not be completed"}.get(scan.state, scan.state)
    subject = f"[Corral] CIS scan of {scan.cluster.name} {outcome}: {c['fail']} fail, {c['pass']} pass"
    fields = {"Cluster": scan.cluster.name, "Profile": scan.profile_name, "Benchmark": scan.benchmark,
              "Result": outcome, "Score": "—" if scan.score is None else f"{scan.score}%",
              "Counts": (f"{c['pass']} pass, {c['fail']} fail, {c['warn']} warn, {c['na']} N/A, "
                         f"{c['skip']} skipped, {c['error']} error of {c['total']}"),
              "Report": report_url(scan)}
    failing = list(scan.results.filter(result__in=("fail", "error")).values_list("check_id", "title")[:10])
    text = "\n".join(f"{k}: {v}" for k, v in fields.items())
    if failing:
        text += "\nFailing checks:\n" + "\n".join(f"  {cid} {title}" for cid, title in failing)
    if scan.reason:
        text += f"\n{scan.reason}"
    return subject, text, fields


def alerts_for(scan: Scan) -> list[ScanAlert]:
    if scan.schedule_id is None:
        return []
    bad = scan.state in (Scan.State.FAILED, Scan.State.ERROR)
    return [a for a in ScanAlert.objects.filter(schedule_id=scan.schedule_id).select_related("notifier")
            if a.when == ScanAlert.When.ALWAYS or bad]


def send_alerts(scan: Scan, reporter=None) -> int:
    """Tell the schedule's notifiers about a finished scan; a notifier that fails is logged, the others still sent."""
    from notifiers import services as notify

    sent = 0
    subject, text, fields = alert_message(scan)
    for alert in alerts_for(scan):
        try:
            notify.send(alert.notifier, subject=subject, text=text, fields=fields, link=report_url(scan))
            sent += 1
            if reporter:
                reporter.log(f"alert sent to {alert.notifier}")
        except notify.NotifyError as exc:
            if reporter:
                reporter.log(f"alert to {alert.notifier} failed: {exc}", "warning")
    return sent
