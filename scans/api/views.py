"""``/v3/scan-profiles/``, ``/v3/scans/`` (reports, results, CSV/JSON, comparison), ``/v3/scan-schedules/``,
``/v3/scan-alerts/`` and ``POST /v3/clusters/{id}/scan/``."""
from __future__ import annotations

import django_filters
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from clusters.models import Cluster
from portal.api.errors import conflict
from portal.api.viewsets import PortalModelViewSet, PortalViewSetMixin
from scans import reports, services
from scans.api.serializers import (
    CheckResultSerializer,
    ScanAlertSerializer,
    ScanDetailSerializer,
    ScanProfileSerializer,
    ScanRequestSerializer,
    ScanScheduleSerializer,
    ScanSerializer,
)
from scans.models import CheckResult, Scan, ScanAlert, ScanProfile, ScanSchedule


class ScanProfileViewSet(PortalModelViewSet):
    """Benchmarks with the checks they skip. Built-in profiles are read-only; make your own from them."""

    queryset = ScanProfile.objects.all()
    serializer_class = ScanProfileSerializer
    filterset_fields = ["benchmark", "builtin", "name"]
    search_fields = ["name", "description"]

    def extra_create_fields(self) -> dict:
        return {"created_by": self.request.user}

    def perform_destroy(self, instance):
        if instance.builtin:
            raise ValidationError("Built-in profiles cannot be deleted.")
        if instance.schedules.exists():
            raise ValidationError("Schedules use this profile; change or delete them first.")
        super().perform_destroy(instance)


class ResultFilter(django_filters.FilterSet):
    class Meta:
        model = CheckResult
        fields = ["result", "section", "source", "node_type", "level", "scored"]


class ScanViewSet(PortalViewSetMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin, mixins.DestroyModelMixin,
                  viewsets.GenericViewSet):
    """Scan reports: totals, sections, results per check (with evidence), CSV and JSON, comparisons.

    Scans start with ``POST /v3/clusters/{id}/scan/`` or from a schedule.
    """

    queryset = Scan.objects.select_related("cluster", "job", "created_by")
    serializer_class = ScanSerializer
    filterset_fields = ["cluster", "state", "benchmark", "trigger", "schedule", "profile"]
    ordering_fields = ["created_at", "score", "failed"]
    action_permissions = {"results": "view", "download": "view", "compare": "view"}

    def get_serializer_class(self):
        return ScanSerializer if self.action == "list" else ScanDetailSerializer

    @extend_schema(responses=CheckResultSerializer(many=True),
                   parameters=[OpenApiParameter(f, str) for f in ResultFilter.Meta.fields])
    @action(detail=True, methods=["get"])
    def results(self, request, pk=None):
        """The checks of one scan, filtered by result, section, source, node type, level or scored."""
        scan = self.get_object()
        rows = ResultFilter(request.query_params, queryset=scan.results.all()).qs
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(CheckResultSerializer(page, many=True).data)

    @extend_schema(parameters=[OpenApiParameter("format", str, enum=["json", "csv"])], responses={200: None})
    @action(detail=True, methods=["get"], url_path="download/(?P<fmt>json|csv)")
    def download(self, request, pk=None, fmt="json"):
        """The report as a file: ``download/json/`` (everything, raw kube-bench output included) or ``download/csv/``."""
        scan = self.get_object()
        name = f"corral-scan-{scan.cluster.name}-{scan.pk}"
        if fmt == "csv":
            response = HttpResponse(reports.to_csv(scan), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
            return response
        response = Response(reports.document(scan))
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response

    @extend_schema(parameters=[OpenApiParameter("with", int, required=True, description="The other scan's id")])
    @action(detail=True, methods=["get"])
    def compare(self, request, pk=None):
        """What turned pass or fail between another scan of the same cluster (``?with=ID``, the older) and this one."""
        scan = self.get_object()
        other_id = request.query_params.get("with", "")
        if not other_id.isdigit():
            raise ValidationError({"with": ["Give the id of another scan of this cluster."]})
        other = self.get_queryset().filter(pk=int(other_id)).first()
        if other is None:
            raise ValidationError({"with": ["No such scan that you may see."]})
        try:
            return Response(reports.compare(other, scan))
        except ValueError as exc:
            raise ValidationError({"with": [str(exc)]}) from None


class ClusterScanView(PortalViewSetMixin, generics.GenericAPIView):
    """``POST /v3/clusters/{id}/scan/``: scan the cluster now (202 with the scan and its job)."""

    queryset = Cluster.objects.all()
    serializer_class = ScanRequestSerializer
    action = "scan"
    action_permissions = {"scan": "view"}  # seeing the cluster; the scan itself needs scan.scan there

    @extend_schema(request=ScanRequestSerializer, responses={202: ScanSerializer})
    def post(self, request, pk=None):
        cluster = self.get_object()
        serializer = ScanRequestSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        try:
            scan = services.request_scan(cluster, serializer.validated_data.get("profile"), user=request.user)
        except services.ScanRefused as exc:
            return conflict(str(exc))
        return Response(ScanSerializer(scan, context=self.get_serializer_context()).data,
                        status=status.HTTP_202_ACCEPTED)


class ScanScheduleViewSet(PortalModelViewSet):
    queryset = ScanSchedule.objects.select_related("cluster", "profile")
    serializer_class = ScanScheduleSerializer
    filterset_fields = ["cluster", "profile", "enabled"]

    def extra_create_fields(self) -> dict:
        return {"created_by": self.request.user}


class ScanAlertViewSet(PortalModelViewSet):
    queryset = ScanAlert.objects.select_related("schedule__cluster", "notifier")
    serializer_class = ScanAlertSerializer
    filterset_fields = ["schedule", "notifier", "when"]
