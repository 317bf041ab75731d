from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response

from backups.api.serializers import SnapshotRequestSerializer, SnapshotSerializer
from clusters import config as cluster_config
from clusters import schema, services
from clusters.api.serializers import (
    ClusterSerializer,
    ConfigVersionSerializer,
    ConfigWriteSerializer,
    NodeSerializer,
    ProjectSerializer,
    UpgradeRequestSerializer,
)
from clusters.models import Cluster, Node, Project
from portal.api.errors import conflict
from portal.api.jobs import JobSerializer
from portal.api.viewsets import PortalModelViewSet, PortalReadOnlyViewSet
from portal.api.yaml import YAMLParser, YAMLRenderer


class ClusterViewSet(PortalModelViewSet):
    """Clusters, imported by kubeconfig. ``config`` speaks YAML (Accept/Content-Type application/yaml) or JSON."""

    queryset = Cluster.objects.all()
    serializer_class = ClusterSerializer
    filterset_fields = ["kind", "state", "name", "kubernetes_version"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "state", "kubernetes_version", "created_at", "node_count"]
    action_permissions = {"nodes": "view", "config": "view", "config_history": "view", "put_config": "change",
                          "sync": "sync", "upgrade": "upgrade", "snapshot": "snapshot"}

    audit_create = False  # inventory.import_cluster audits the import itself

    def _job_response(self, job):
        return Response(JobSerializer(job, context=self.get_serializer_context()).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=NodeSerializer(many=True))
    @action(detail=True, methods=["get"])
    def nodes(self, request, pk=None):
        cluster = self.get_object()
        page = self.paginate_queryset(cluster.nodes.order_by("name"))
        return self.get_paginated_response(NodeSerializer(page, many=True, context=self.get_serializer_context()).data)

    @extend_schema(responses=ConfigVersionSerializer)
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, YAMLRenderer, BrowsableAPIRenderer])
    def config(self, request, pk=None):
        """The config in force. ``Accept: application/yaml`` returns the YAML as it was written."""
        cluster = self.get_object()
        latest = cluster.config
        if isinstance(request.accepted_renderer, YAMLRenderer):
            return Response(latest.source if latest else schema.to_yaml(cluster_config.initial_document(cluster)))
        if latest is None:
            return Response({"version": 0, "document": cluster_config.initial_document(cluster)})
        return Response(ConfigVersionSerializer(latest).data)

    @extend_schema(request=ConfigWriteSerializer, responses=ConfigVersionSerializer)
    @config.mapping.put
    def put_config(self, request, pk=None):
        """Save a new config version (YAML body or JSON); a new kubernetes_version starts an upgrade."""
        cluster = self.get_object()
        how = 'as YAML (Content-Type: application/yaml) or as JSON {"yaml": "..."} or {"document": {...}}'
        if not isinstance(request.data, dict):
            raise ValidationError(f"Send the config {how}. Nothing was saved.")
        if not request.data:
            raise ValidationError(f"The body is empty: send the config {how}. Nothing was saved.")
        serializer = ConfigWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            version, job = cluster_config.apply(cluster, data.get("yaml") or data["document"], user=request.user,
                                                comment=data.get("comment", ""))
        except schema.ConfigError as exc:
            raise ValidationError(exc.by_field()) from None
        body = ConfigVersionSerializer(version).data
        body["upgrade_job"] = JobSerializer(job, context=self.get_serializer_context()).data if job else None
        return Response(body)

    @extend_schema(responses=ConfigVersionSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="config/history")
    def config_history(self, request, pk=None):
        cluster = self.get_object()
        page = self.paginate_queryset(cluster.config_versions.select_related("created_by"))
        return self.get_paginated_response(ConfigVersionSerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Refresh this cluster's inventory now."""
        return self._job_response(services.request_sync(self.get_object(), user=request.user))

    @extend_schema(request=UpgradeRequestSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def upgrade(self, request, pk=None):
        """Upgrade to another Kubernetes version: saves a config version with it and starts the upgrade job."""
        cluster = self.get_object()
        serializer = UpgradeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            job = services.request_upgrade(cluster, user=request.user, **serializer.validated_data)
        except schema.ConfigError as exc:
            raise ValidationError(exc.by_field()) from None
        except services.UpgradeRefused as exc:
            raise ValidationError({"kubernetes_version": [str(exc)]}) from None
        return self._job_response(job)

    @extend_schema(request=SnapshotRequestSerializer, responses={202: SnapshotSerializer})
    @action(detail=True, methods=["post"])
    def snapshot(self, request, pk=None):
        """Take a snapshot now (etcd on an etcd node; a resource backup for an imported cluster)."""
        from backups import services as backups

        cluster = self.get_object()
        serializer = SnapshotRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        target = data.pop("target", "")
        filters = {k: v for k, v in data.items() if v}
        try:
            snapshot = backups.take_snapshot(cluster, user=request.user, target=target, filters=filters or None)
        except backups.BackupError as exc:
            if exc.field:
                raise ValidationError({exc.field: [exc.message]}) from None
            return conflict(exc.message)
        return Response(SnapshotSerializer(snapshot, context=self.get_serializer_context()).data,
                        status=status.HTTP_202_ACCEPTED)

    def get_parsers(self):
        parsers = super().get_parsers()
        if self.request is not None and self.request.method == "PUT" and self.request.path.rstrip("/").endswith("/config"):
            parsers = [YAMLParser(), *parsers]
        return parsers


class NodeViewSet(PortalReadOnlyViewSet):
    queryset = Node.objects.select_related("cluster")
    serializer_class = NodeSerializer
    filterset_fields = ["cluster", "ready", "unschedulable", "kubelet_version", "name"]
    search_fields = ["name", "internal_ip"]
    ordering_fields = ["name", "kubelet_version", "synced_at"]


class ProjectViewSet(PortalModelViewSet):
    queryset = Project.objects.select_related("cluster")
    serializer_class = ProjectSerializer
    filterset_fields = ["cluster", "name"]
    search_fields = ["name", "description"]
