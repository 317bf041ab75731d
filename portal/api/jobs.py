"""``/v3/jobs/``: follow, cancel and resume long operations."""
from __future__ import annotations

import django_filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from portal import jobs
from portal.api.errors import conflict
from portal.api.serializers import PortalSerializer
from portal.api.viewsets import PortalReadOnlyViewSet
from portal.jobs.control import JobStateError, is_resumable
from portal.maintenance import DiagnoseRunner
from portal.models import Job, JobLogLine


class JobLogLineSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobLogLine
        fields = ["id", "at", "level", "message"]


class JobSerializer(PortalSerializer):
    capability_actions = ("view", "cancel", "resume")
    created_by = serializers.StringRelatedField()
    target_type = serializers.SerializerMethodField()
    url = serializers.HyperlinkedIdentityField(view_name="api:job-detail")

    class Meta:
        model = Job
        fields = [
            "id", "url", "kind", "queue", "status", "progress", "progress_message", "params", "result", "error",
            "target_type", "target_id", "target_repr", "cluster", "created_by", "created_at", "started_at",
            "finished_at", "heartbeat_at", "worker", "attempts", "cancel_requested", "capabilities",
        ]
        read_only_fields = fields

    def get_capabilities(self, obj: Job) -> dict[str, bool]:
        """Permission and state together: ``resume`` is offered exactly when POST .../resume/ would work."""
        caps = super().get_capabilities(obj)
        if "cancel" in caps:
            caps["cancel"] = caps["cancel"] and not obj.is_finished
        if "resume" in caps:
            caps["resume"] = caps["resume"] and is_resumable(obj)
        return caps

    def get_target_type(self, obj: Job) -> str | None:
        return obj.target_type.model if obj.target_type_id else None


class JobDetailSerializer(JobSerializer):
    log = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["log"]
        read_only_fields = fields

    def get_log(self, obj: Job) -> list[dict]:
        return JobLogLineSerializer(obj.log_lines.all()[:1000], many=True).data


class DiagnoseSerializer(serializers.Serializer):
    steps = serializers.IntegerField(min_value=1, max_value=100, default=3)
    delay = serializers.FloatField(min_value=0, max_value=60, default=0.2)
    fail_at = serializers.IntegerField(min_value=1, required=False, help_text="End failed at this step")
    crash_at = serializers.IntegerField(
        min_value=1, required=False, help_text="Raise an unexpected error at this step (tests failure reporting)"
    )


class JobFilter(django_filters.FilterSet):
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Job
        fields = ["status", "kind", "queue", "cluster", "target_id"]


class JobViewSet(PortalReadOnlyViewSet):
    queryset = Job.objects.select_related("created_by", "target_type")
    filterset_class = JobFilter
    search_fields = ["kind", "target_repr", "progress_message"]
    ordering_fields = ["created_at", "started_at", "finished_at", "status", "kind"]
    action_permissions = {"cancel": "cancel", "resume": "resume", "log": "view"}

    def get_serializer_class(self):
        if self.action == "retrieve":
            return JobDetailSerializer
        if self.action == "diagnose":
            return DiagnoseSerializer
        return JobSerializer

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = self.get_object()
        try:
            job = jobs.request_cancel(job, user=request.user)
        except JobStateError as exc:
            return conflict(str(exc))
        return Response(JobSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        job = self.get_object()
        try:
            job = jobs.request_resume(job, user=request.user)
        except JobStateError as exc:
            return conflict(str(exc))
        return Response(JobSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="Only lines with an id greater than this")],
        responses=JobLogLineSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def log(self, request, pk=None):
        """Log lines, oldest first; poll with ``?after=<last id>`` to follow a running job."""
        job = self.get_object()
        lines = job.log_lines.all()
        after = request.query_params.get("after")
        if after and after.isdigit():
            lines = lines.filter(id__gt=int(after))
        return Response(JobLogLineSerializer(lines[:1000], many=True).data)

    @extend_schema(request=DiagnoseSerializer, responses={202: JobSerializer})
    @action(detail=False, methods=["post"], url_path="diagnose")
    def diagnose(self, request):
        """Admins only: run a diagnostic job to check that workers pick up work and report progress."""
        from rbac import access

        if not access.grants_for(request.user).is_admin():
            from rest_framework.exceptions import PermissionDenied

            raise PermissionDenied("Only admins may run diagnostic jobs.")
        serializer = DiagnoseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = jobs.enqueue(DiagnoseRunner.kind, user=request.user, params=serializer.validated_data)
        return Response(JobSerializer(job, context=self.get_serializer_context()).data, status=status.HTTP_202_ACCEPTED)
