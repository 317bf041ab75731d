"""Models every app shares: the Job that tracks each long operation, and API tokens."""
from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone


class Job(models.Model):
    """One long operation. The row is the single source of truth; the RQ job only carries its id."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        PAUSED = "paused", "Paused"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=64, db_index=True, help_text="What the job does, e.g. clusters.upgrade")
    queue = models.CharField(max_length=32, default="default")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=255, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    target_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    target_id = models.CharField(max_length=64, blank=True)
    target = GenericForeignKey("target_type", "target_id")
    target_repr = models.CharField(max_length=200, blank=True, help_text="Target's name, kept if it is deleted")
    cluster = models.ForeignKey(
        "clusters.Cluster", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs",
        help_text="The cluster this job acts on; decides who may see it",
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.target_repr}".strip()

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration(self):
        if not self.started_at:
            return None
        return (self.finished_at or timezone.now()) - self.started_at


class JobLogLine(models.Model):
    """A line a job wrote while running; saved at once so admin and API can follow it live."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_lines")
    at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, default="info")
    message = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.level} {self.message}"


def _hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the API. Only its hash is stored; the token is shown once, at creation."""

    PREFIX = "corral_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    description = models.CharField(max_length=200, blank=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=12, editable=False, help_text="Last characters, to recognise it")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} …{self.hint}"

    @classmethod
    def issue(cls, user, description: str = "", expires_at=None) -> tuple[ApiToken, str]:
        raw = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, description=description, key_hash=_hash_token(raw), hint=raw[-4:], expires_at=expires_at
        )
        return token, raw

    @classmethod
    def find(cls, raw: str) -> ApiToken | None:
        token = cls.objects.select_related("user").filter(key_hash=_hash_token(raw)).first()
        if token is None or (token.expires_at and token.expires_at <= timezone.now()):
            return None
        return token

    @property
    def is_expired(self) -> bool:
        return bool(self.expires_at and self.expires_at <= timezone.now())


class AuditEvent(models.Model):
    """Who did what, when, from where. Written in the same transaction as the change it describes."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True, help_text="Kept when the user is deleted")
    action = models.CharField(max_length=32, db_index=True)
    object_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    cluster = models.ForeignKey(
        "clusters.Cluster", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    changes = models.JSONField(default=dict, blank=True, help_text="field: [before, after], secrets masked")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or 'system'} {self.action} {self.object_repr}"


from portal.sso.models import SAMLMessageID, SSOProvider, SSOSettings  # noqa: E402,F401 - SSO models live in this app
