from __future__ import annotations

import copy

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from notifiers.models import Notifier
from portal.api.serializers import PortalSerializer, SecretField


class NotifierSerializer(PortalSerializer):
    capability_actions = ("view", "change", "delete")
    slack_webhook_url = SecretField(required=False, allow_blank=True,
                                    help_text="Incoming webhook URL; stored encrypted, reading returns a mask")
    smtp_password = SecretField(required=False, allow_blank=True, help_text="Stored encrypted, reading returns a mask")

    class Meta:
        model = Notifier
        fields = ["id", "name", "kind", "description", "slack_webhook_url", "slack_channel", "smtp_host", "smtp_port",
                  "smtp_starttls", "smtp_username", "smtp_password", "email_from", "email_to", "last_sent_at",
                  "last_error", "created_at", "updated_at", "capabilities"]
        read_only_fields = ["last_sent_at", "last_error", "created_at", "updated_at"]

    def validate(self, attrs):
        obj = copy.copy(self.instance) if self.instance is not None else Notifier()
        for key, value in attrs.items():
            setattr(obj, key, value)
        try:
            obj.clean()
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs
