"""SSO providers over the API, with the same test / refresh / new-key operations as the admin."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.api.viewsets import PortalModelViewSet
from portal.sso import checks, services
from portal.sso.api.serializers import SSOProviderSerializer
from portal.sso.models import SSOProvider

TestReport = inline_serializer(
    "SSOTestReport",
    fields={
        "passed": serializers.BooleanField(),
        "findings": serializers.ListField(child=serializers.DictField(child=serializers.CharField())),
    },
)


class SSOProviderViewSet(PortalModelViewSet):
    queryset = SSOProvider.objects.all()
    serializer_class = SSOProviderSerializer
    search_fields = ["name", "slug", "idp_entity_id"]
    ordering_fields = ["name", "slug", "updated_at"]
    filterset_fields = ["enabled"]
    action_permissions = {"test": "view", "refresh_metadata": "change", "generate_sp_key": "change"}

    @extend_schema(request=None, responses=TestReport)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Check metadata, certificates, entity ids and URLs; ``findings`` says what is wrong in words."""
        report = checks.check_provider(self.get_object(), request)
        return Response({"passed": report.passed, "findings": [f.as_dict() for f in report]})

    @extend_schema(request=None, responses=SSOProviderSerializer)
    @action(detail=True, methods=["post"], url_path="refresh-metadata")
    def refresh_metadata(self, request, pk=None):
        provider = self.get_object()
        try:
            services.refresh_metadata(provider, user=request.user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return Response(self.get_serializer(provider).data)

    @extend_schema(request=None, responses=SSOProviderSerializer)
    @action(detail=True, methods=["post"], url_path="generate-sp-key")
    def generate_sp_key(self, request, pk=None):
        provider = services.generate_sp_key(self.get_object(), user=request.user)
        return Response(self.get_serializer(provider).data)
