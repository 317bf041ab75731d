"""``/v3/tokens/``: a user's own API tokens. The token itself is returned once, at creation."""
from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.response import Response

from portal.api.serializers import PortalSerializer
from portal.api.viewsets import PortalCreateReadDeleteViewSet
from portal.models import ApiToken


class ApiTokenSerializer(PortalSerializer):
    capability_actions = ("view", "delete")
    token = serializers.SerializerMethodField(help_text="Shown only in the response that creates it")

    class Meta:
        model = ApiToken
        fields = ["id", "description", "hint", "created_at", "expires_at", "last_used_at", "token", "capabilities"]
        read_only_fields = ["id", "hint", "created_at", "last_used_at", "token", "capabilities"]

    def get_token(self, obj) -> str | None:
        return getattr(obj, "raw_token", None)

    def create(self, validated_data):
        user = validated_data.pop("user", None) or self.context["request"].user
        token, raw = ApiToken.issue(user, **validated_data)
        token.raw_token = raw
        return token


class ApiTokenViewSet(PortalCreateReadDeleteViewSet):
    queryset = ApiToken.objects.select_related("user").order_by("-created_at")
    serializer_class = ApiTokenSerializer
    ordering_fields = ["created_at", "last_used_at"]

    def get_queryset(self):
        # Tokens are personal: even admins list only their own here.
        return super().get_queryset().filter(user=self.request.user)

    def extra_create_fields(self) -> dict:
        return {"user": self.request.user}  # tokens are minted for the caller only

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        return Response(serializer.data, status=status.HTTP_201_CREATED)
