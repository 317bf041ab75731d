"""Notifiers: where Corral sends alerts (Slack incoming webhooks, e-mail over SMTP), shared by every feature."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models

from portal.crypto import EncryptedTextField


class Notifier(models.Model):
    class Kind(models.TextChoices):
        SLACK = "slack", "Slack (incoming webhook)"
        EMAIL = "email", "E-mail (SMTP)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SLACK)
    description = models.CharField(max_length=300, blank=True)
    slack_webhook_url = EncryptedTextField(blank=True, help_text="Incoming webhook URL; stored encrypted, never shown back")
    slack_channel = models.CharField(max_length=100, blank=True, help_text="Optional channel override, e.g. #alerts")
    smtp_host = models.CharField(max_length=253, blank=True)
    smtp_port = models.PositiveIntegerField(default=587)
    smtp_starttls = models.BooleanField(default=True, help_text="Upgrade the connection with STARTTLS before login")
    smtp_username = models.CharField(max_length=200, blank=True)
    smtp_password = EncryptedTextField(blank=True, help_text="Stored encrypted, never shown back")
    email_from = models.CharField(max_length=254, blank=True)
    email_to = models.TextField(blank=True, help_text="Recipients, separated by commas")
    last_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [a.strip() for a in self.email_to.replace(";", ",").split(",") if a.strip()]

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.kind == self.Kind.SLACK:
            url = self.slack_webhook_url or ""
            if not url:
                errors["slack_webhook_url"] = ["A Slack notifier needs its incoming webhook URL."]
            elif not url.startswith(("https://", "http://")):
                errors["slack_webhook_url"] = ["The webhook URL starts with https://."]
        else:
            if not self.smtp_host:
                errors["smtp_host"] = ["An e-mail notifier needs its SMTP server."]
            if not self.email_from:
                errors["email_from"] = ["Say which address the mail comes from."]
            if not self.recipients:
                errors["email_to"] = ["Give at least one recipient."]
            for address in ([self.email_from] if self.email_from else []) + self.recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    errors.setdefault("email_to" if address != self.email_from else "email_from", []).append(
                        f"{address!r} is not an e-mail address.")
            if self.smtp_password and not self.smtp_username:
                errors["smtp_username"] = ["A password needs the user name it belongs to."]
        if errors:
            raise ValidationError(errors)
