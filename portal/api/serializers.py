"""Serializer pieces shared by all apps: capabilities, restricted related fields, secrets."""
from __future__ import annotations

from rest_framework import serializers

from portal.crypto import mask
from rbac import access


class RestrictedRelatedField(serializers.PrimaryKeyRelatedField):
    """A related field offering only objects the caller may see, so nobody attaches someone else's."""

    def __init__(self, *args, action: str = "view", **kwargs):
        self.required_action = action
        super().__init__(*args, **kwargs)

    def get_queryset(self):
        queryset = super().get_queryset()
        request = self.context.get("request")
        if request is None:
            return queryset.none()
        return access.restrict(queryset, request.user, self.required_action)


class SecretField(serializers.CharField):
    """Write-only in practice: reading shows a mask, never the secret."""

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("style", {"input_type": "password", "base_template": "textarea.html"})
        super().__init__(**kwargs)

    def to_representation(self, value) -> str:
        return mask(value)

    def to_internal_value(self, data) -> str:
        """A client that sends back what it read (the mask) keeps the stored secret instead of saving the mask."""
        value = super().to_internal_value(data)
        instance = getattr(self.parent, "instance", None)
        stored = getattr(instance, self.source, None) if instance is not None and self.source != "*" else None
        if stored and value == mask(stored):
            return stored
        return value


class PortalSerializer(serializers.ModelSerializer):
    """Adds ``capabilities``: which actions the caller may run on each object (for UI buttons)."""

    capability_actions: tuple[str, ...] = ("view", "change", "delete")
    serializer_related_field = RestrictedRelatedField

    capabilities = serializers.SerializerMethodField()

    def get_capabilities(self, obj) -> dict[str, bool]:
        request = self.context.get("request")
        if request is None:
            return {}
        return access.capabilities(request.user, obj, self.capability_actions)
