"""``/v3/snapshots/``, ``/v3/restores/``, ``/v3/backuptargets/``; a snapshot is taken with
``POST /v3/clusters/{id}/snapshot/`` and restored with ``POST /v3/snapshots/{id}/restore/``."""
from __future__ import annotations

from contextlib import contextmanager

from django.db import IntegrityError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from backups import services
from backups.api.serializers import (
    BackupTargetSerializer,
    DiscoverRequestSerializer,
    RestoreRequestSerializer,
    RestoreSerializer,
    SnapshotDetailSerializer,
    SnapshotSerializer,
)
from backups.models import BackupTarget, Restore, Snapshot
from backups.s3 import TargetError
from clusters.models import Cluster
from portal.api.errors import conflict
from portal.api.jobs import JobSerializer
from portal.api.viewsets import PortalModelViewSet, PortalReadOnlyViewSet
from rbac import access


def refusal(exc: services.BackupError) -> Response:
    if exc.field:
        raise ValidationError({exc.field: [exc.message]})
    return conflict(exc.message)


class BackupTargetViewSet(PortalModelViewSet):
    """S3-compatible buckets snapshots are copied to. Keys are stored encrypted and shown masked."""

    queryset = BackupTarget.objects.select_related("cluster")
    serializer_class = BackupTargetSerializer
    filterset_fields = ["cluster", "name", "bucket"]
    search_fields = ["name", "bucket", "endpoint"]

    def extra_create_fields(self) -> dict:
        return {"created_by": self.request.user}

    # A fleet-wide name is unique by a conditional constraint DRF's validators do not check; the clash is
    # caught after the write rule has passed, so it tells nothing to whoever may not write there.
    def perform_create(self, serializer):
        with _name_clash_is_invalid():
            super().perform_create(serializer)

    def perform_update(self, serializer):
        with _name_clash_is_invalid():
            super().perform_update(serializer)


@contextmanager
def _name_clash_is_invalid():
    try:
        yield
    except IntegrityError:
        raise ValidationError({"name": ["There is already a fleet-wide backup target of that name."]}) from None


class SnapshotViewSet(PortalReadOnlyViewSet):
    """Snapshots: list, read, delete (a job removes every copy), restore, and discover those in a bucket."""

    queryset = Snapshot.objects.select_related("cluster", "target", "job", "created_by")
    serializer_class = SnapshotSerializer
    filterset_fields = ["cluster", "state", "kind", "trigger", "target"]
    search_fields = ["name", "cluster__name"]
    ordering_fields = ["created_at", "name", "size"]
    # Restoring needs "restore" on the cluster (checked by the service); here the snapshot must be visible.
    action_permissions = {"restore": "view", "destroy": "delete", "discover": "view"}
    http_method_names = ["get", "post", "delete", "head", "options"]

    def get_serializer_class(self):
        return SnapshotSerializer if self.action == "list" else SnapshotDetailSerializer

    @extend_schema(request=None, responses={202: JobSerializer})
    def destroy(self, request, pk=None):
        """Delete the snapshot from the nodes, the bucket, the cluster's records and Corral (a job)."""
        snapshot = self.get_object()
        try:
            job = services.delete_snapshots([snapshot], user=request.user)
        except services.BackupError as exc:
            return refusal(exc)
        return Response(JobSerializer(job, context=self.get_serializer_context()).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=RestoreRequestSerializer, responses={202: RestoreSerializer})
    @action(detail=True, methods=["post"])
    def restore(self, request, pk=None):
        """Restore this snapshot: ``parts`` = etcd, kubernetes (etcd + version) or all (etcd + version + config)."""
        snapshot = self.get_object()
        serializer = RestoreRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            restore = services.restore_snapshot(snapshot, parts=serializer.validated_data["parts"], user=request.user)
        except services.BackupError as exc:
            return refusal(exc)
        return Response(RestoreSerializer(restore, context=self.get_serializer_context()).data,
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=DiscoverRequestSerializer, responses=SnapshotSerializer(many=True))
    @action(detail=False, methods=["post"])
    def discover(self, request):
        """Record the snapshots of a cluster found in a backup target's bucket (after the portal lost them)."""
        serializer = DiscoverRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cluster = get_object_or_404(access.restrict(Cluster.objects.all(), request.user, "view"),
                                    pk=serializer.validated_data["cluster"])
        access.require(request.user, "snapshot", cluster)  # before the name is looked up: 403, whether it exists or not
        try:
            target = services.target_named(cluster, serializer.validated_data["target"])
            found = services.discover(cluster, target, user=request.user)
        except services.BackupError as exc:
            return refusal(exc)
        except TargetError as exc:
            return conflict(str(exc))
        return Response(SnapshotSerializer(found, many=True, context=self.get_serializer_context()).data)


class RestoreViewSet(PortalReadOnlyViewSet):
    """Restores with their steps and the report of what differs from the snapshot afterwards."""

    queryset = Restore.objects.select_related("cluster", "snapshot", "job", "created_by")
    serializer_class = RestoreSerializer
    filterset_fields = ["cluster", "state", "parts"]
    ordering_fields = ["created_at", "finished_at"]
