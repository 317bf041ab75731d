"""Backup targets, snapshots and restores (see README.md for the snapshot format and the restore steps)."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from portal.crypto import EncryptedTextField

BUCKET = RegexValidator(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", "An S3 bucket name: 3-63 lowercase letters, digits, "
                                                             "dots and dashes")


class BackupTarget(models.Model):
    """An S3-compatible bucket snapshots are copied to, besides the etcd nodes' own disks.

    A target of one cluster is managed by whoever may manage that cluster's targets; a target with no
    cluster is shared by the fleet and managed by global roles only.
    """

    name = models.SlugField(max_length=63)
    cluster = models.ForeignKey("clusters.Cluster", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="backup_targets",
                                help_text="Empty: a fleet-wide target, managed and used by global roles only (its keys reach "
                                          "the nodes of every cluster that uses it)")
    endpoint = models.CharField(max_length=300, help_text="host[:port] or URL of the S3 API, e.g. s3.eu-west-1.amazonaws.com")
    region = models.CharField(max_length=64, blank=True, default="us-east-1")
    bucket = models.CharField(max_length=63, validators=[BUCKET])
    folder = models.CharField(max_length=200, blank=True, help_text="Prefix inside the bucket")
    access_key = EncryptedTextField(help_text="Stored encrypted, never shown back in full")
    secret_key = EncryptedTextField(help_text="Stored encrypted, never shown back")
    endpoint_ca = models.TextField(blank=True, help_text="PEM CA bundle for an endpoint with a private CA")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "name"], name="backups_target_unique_name"),
            models.UniqueConstraint(fields=["name"], condition=models.Q(cluster__isnull=True),
                                    name="backups_target_unique_global_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.folder.strip('/')}".rstrip("/")

    @property
    def masked_access_key(self) -> str:
        key = self.access_key or ""
        return (key[:4] + "…" + key[-2:]) if len(key) > 8 else "…"


class Snapshot(models.Model):
    """One snapshot set: etcd data (or, for imported clusters, the API's objects), Kubernetes version and
    config version at one moment, with where its copies are and how to check them."""

    class Kind(models.TextChoices):
        ETCD = "etcd", "etcd snapshot"
        RESOURCES = "resources", "Resource backup"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Manual"
        RECURRING = "recurring", "Recurring"
        BEFORE_UPGRADE = "before-upgrade", "Before an upgrade"
        AFTER_IMPORT = "after-import", "After import"
        DISCOVERED = "discovered", "Discovered"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SAVING = "saving", "Saving"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"
        MISSING = "missing", "Missing"

    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ETCD)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    reason = models.TextField(blank=True)
    target = models.ForeignKey(BackupTarget, null=True, blank=True, on_delete=models.SET_NULL, related_name="snapshots",
                               help_text="Empty: the etcd nodes' disks only")
    s3_location = models.CharField(max_length=400, blank=True, help_text="s3://bucket/folder where a copy was written")
    node = models.CharField(max_length=253, blank=True, help_text="The etcd node that saved it (its disk holds a copy)")
    location = models.CharField(max_length=400, blank=True, help_text="file:// path on the node, or the archive path")
    cluster_uid = models.CharField(max_length=64, blank=True, help_text="kube-system namespace uid: the cluster's identity")
    kubernetes_version = models.CharField(max_length=64, blank=True)
    config_version = models.PositiveIntegerField(null=True, blank=True)
    config_document = models.JSONField(default=dict, blank=True)
    etcd_revision = models.BigIntegerField(null=True, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest = models.JSONField(default=dict, blank=True, help_text="The manifest written next to the archive")
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    taken_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="backups_snapshot_unique_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def recurring(self) -> bool:
        return self.trigger == self.Trigger.RECURRING


class Restore(models.Model):
    """A restore of one snapshot onto its cluster, with what it brought back and what differs afterwards."""

    class Parts(models.TextChoices):
        ETCD = "etcd", "etcd only"
        KUBERNETES = "kubernetes", "etcd and Kubernetes version"
        ALL = "all", "etcd, Kubernetes version and cluster config"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.CASCADE, related_name="restores")
    snapshot = models.ForeignKey(Snapshot, null=True, on_delete=models.SET_NULL, related_name="restores")
    snapshot_name = models.CharField(max_length=200)
    parts = models.CharField(max_length=16, choices=Parts.choices, default=Parts.ETCD)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    reason = models.TextField(blank=True)
    report = models.JSONField(default=dict, blank=True, help_text="Steps taken and the objects that differ afterwards")
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"restore of {self.snapshot_name} ({self.get_parts_display()})"
