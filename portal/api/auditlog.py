"""``/v3/auditlog/``: read-only, filtered like everything else by the permission layer."""
from __future__ import annotations

import django_filters
from rest_framework import serializers

from portal.api.viewsets import PortalReadOnlyViewSet
from portal.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    object_type = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "at", "user", "username", "action", "object_type", "object_id", "object_repr", "cluster",
                  "changes", "source_ip", "message"]
        read_only_fields = fields

    def get_object_type(self, obj) -> str | None:
        return f"{obj.object_type.app_label}.{obj.object_type.model}" if obj.object_type_id else None


class AuditFilter(django_filters.FilterSet):
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "user", "username", "cluster", "object_id"]


class AuditEventViewSet(PortalReadOnlyViewSet):
    queryset = AuditEvent.objects.select_related("object_type")
    serializer_class = AuditEventSerializer
    filterset_class = AuditFilter
    search_fields = ["object_repr", "message", "username"]
    ordering_fields = ["at", "action"]
