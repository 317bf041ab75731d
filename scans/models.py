"""CIS scans: profiles over the benchmarks in ``scans/benchmarks/``, scans with a result per check, schedules and
their alert rules."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class ScanProfile(models.Model):
    """A benchmark and the checks it skips, each with the reason. Built-in ones come from the data files."""

    name = models.SlugField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    benchmark = models.CharField(max_length=64, help_text="A benchmark of scans/benchmarks/, e.g. cis-1.8")
    skips = models.JSONField(default=dict, blank=True,
                             help_text='Checks to skip, each with its reason: {"1.2.16": "why"}')
    builtin = models.BooleanField(default=False, editable=False, help_text="Shipped with Corral; not editable")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["benchmark", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from scans import benchmarks

        errors = benchmarks.profile_errors(self.benchmark, self.skips)
        if errors:
            raise ValidationError(errors)


class ScanSchedule(models.Model):
    """Scan a cluster on a cron schedule with a profile; keep the newest ``keep_last`` scheduled reports."""

    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="scan_schedules")
    profile = models.ForeignKey(ScanProfile, on_delete=models.PROTECT, related_name="schedules")
    cron = models.CharField(max_length=100, default="0 3 * * *",
                            help_text="Five fields: minute hour day-of-month month day-of-week (UTC)")
    keep_last = models.PositiveIntegerField(default=5, help_text="Scheduled reports kept; older ones are deleted")
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cluster__name", "pk"]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.profile.name} at {self.cron}"

    def clean(self) -> None:
        from scans import cron

        try:
            cron.parse(self.cron)
        except ValueError as exc:
            raise ValidationError({"cron": str(exc)}) from None
        if self.keep_last < 1:
            raise ValidationError({"keep_last": "Keep at least one report."})


class ScanAlert(models.Model):
    """An alert rule of a schedule: tell a notifier after every scheduled scan, or only when something failed."""

    class When(models.TextChoices):
        ALWAYS = "always", "On every completion"
        FAILURE = "failure", "Only when a check fails or errors"

    schedule = models.ForeignKey(ScanSchedule, on_delete=models.CASCADE, related_name="alerts")
    notifier = models.ForeignKey("notifiers.Notifier", on_delete=models.CASCADE, related_name="scan_alerts")
    when = models.CharField(max_length=16, choices=When.choices, default=When.FAILURE)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["schedule", "notifier"], name="scans_alert_unique")]

    def __str__(self) -> str:
        return f"{self.notifier} ({self.get_when_display().lower()})"


class Scan(models.Model):
    """One run of a profile against a cluster, with its totals; the checks are its ``results``."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        FAILED = "failed", "Failed"
        ERROR = "error", "Error"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "On demand"
        SCHEDULED = "scheduled", "Scheduled"

    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="scans")
    profile = models.ForeignKey(ScanProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="scans")
    profile_name = models.CharField(max_length=100, blank=True, help_text="Kept when the profile is deleted")
    benchmark = models.CharField(max_length=64)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    schedule = models.ForeignKey(ScanSchedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="scans")
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED, db_index=True)
    reason = models.TextField(blank=True)
    kubernetes_version = models.CharField(max_length=64, blank=True)
    distribution = models.CharField(max_length=16, blank=True)
    total = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    warned = models.PositiveIntegerField(default=0)
    not_applicable = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    score = models.FloatField(null=True, blank=True, help_text="Pass / (pass + fail + error), in percent")
    sections = models.JSONField(default=list, blank=True, help_text="Totals and score per section")
    raw = models.JSONField(default=dict, blank=True, help_text="kube-bench's output per node role, as printed")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.cluster.name} {self.profile_name or self.benchmark} {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def counts(self) -> dict[str, int]:
        return {"total": self.total, "pass": self.passed, "fail": self.failed, "warn": self.warned,
                "na": self.not_applicable, "skip": self.skipped, "error": self.errored}


class CheckResult(models.Model):
    """One check of a scan: its result, why, what to do about it, and the evidence it was judged on."""

    class Result(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        WARN = "warn", "Warn / manual"
        NA = "na", "N/A"
        SKIP = "skip", "Skipped"
        ERROR = "error", "Error"

    scan = models.ForeignKey(Scan, on_delete=models.CASCADE, related_name="results")
    position = models.PositiveIntegerField(default=0)
    check_id = models.CharField(max_length=16)
    section = models.CharField(max_length=16)
    title = models.CharField(max_length=300)
    level = models.PositiveSmallIntegerField(default=1)
    scored = models.BooleanField(default=True)
    node_type = models.CharField(max_length=16)
    source = models.CharField(max_length=16, help_text="kube-bench, corral or manual")
    result = models.CharField(max_length=8, choices=Result.choices, db_index=True)
    reason = models.TextField(blank=True)
    remediation = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["scan", "position"]
        constraints = [models.UniqueConstraint(fields=["scan", "check_id"], name="scans_result_unique_check")]

    def __str__(self) -> str:
        return f"{self.check_id} {self.result}"
