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
