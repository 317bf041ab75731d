"""``/v3/upgrades/``: follow upgrades node by node; resume or cancel them.

Read-only: upgrades start when a cluster's kubernetes_version changes (its config or
``/v3/clusters/{id}/upgrade/``). ``resume`` and ``cancel`` need the upgrade permission on
the cluster.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from clusters import upgrades
from clusters.models import NodeTransition, NodeUpgrade, Upgrade
from portal.api.errors import conflict
from portal.api.serializers import PortalSerializer
from portal.api.viewsets import PortalReadOnlyViewSet
from rbac import access


class NodeTransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = NodeTransition
        fields = ["from_state", "to_state", "at", "message"]
        read_only_fields = fields


class NodeUpgradeSerializer(serializers.ModelSerializer):
    transitions = NodeTransitionSerializer(many=True, read_only=True)

    class Meta:
        model = NodeUpgrade
        fields = ["node_name", "role", "batch", "state", "message", "cordoned_before", "started_at", "finished_at",
                  "transitions"]
        read_only_fields = fields


class UpgradeSerializer(PortalSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:upgrade-detail")
    cluster_name = serializers.CharField(source="cluster.name", read_only=True)
    created_by = serializers.StringRelatedField()
    job_status = serializers.CharField(source="job.status", read_only=True, default=None)
    progress = serializers.SerializerMethodField()
    progress_message = serializers.CharField(source="job.progress_message", read_only=True, default="")
    nodes_total = serializers.SerializerMethodField()
    nodes_done = serializers.SerializerMethodField()

    class Meta:
        model = Upgrade
        fields = ["id", "url", "cluster", "cluster_name", "from_version", "to_version", "mode", "strategy", "state",
                  "reason", "job", "job_status", "progress", "progress_message", "nodes_total", "nodes_done",
                  "created_by", "created_at", "finished_at", "capabilities"]
        read_only_fields = fields

    def _nodes(self, obj: Upgrade) -> list[NodeUpgrade]:
        return list(obj.nodes.all())  # prefetched by the viewset

    def get_progress(self, obj: Upgrade) -> int:
        if obj.state == Upgrade.State.SUCCEEDED:
            return 100
        return obj.job.progress if obj.job_id and obj.job else 0

    def get_nodes_total(self, obj: Upgrade) -> int:
        return len(self._nodes(obj))

    def get_nodes_done(self, obj: Upgrade) -> int:
        return sum(1 for n in self._nodes(obj) if n.state == NodeUpgrade.State.ACTIVE)

    def get_capabilities(self, obj: Upgrade) -> dict[str, bool]:
        request = self.context.get("request")
        if request is None:
            return {}
        may = access.can(request.user, "upgrade", obj)
        return {
            "view": access.can(request.user, "view", obj),
            "resume": may and upgrades.resumable(obj),
            "cancel": may and upgrades.cancellable(obj),
        }


class UpgradeDetailSerializer(UpgradeSerializer):
    nodes = NodeUpgradeSerializer(many=True, read_only=True)

    class Meta(UpgradeSerializer.Meta):
        fields = UpgradeSerializer.Meta.fields + ["nodes"]
        read_only_fields = fields


class UpgradeViewSet(PortalReadOnlyViewSet):
    queryset = Upgrade.objects.select_related("cluster", "job", "created_by").prefetch_related("nodes")
    serializer_class = UpgradeSerializer
    filterset_fields = ["cluster", "state", "mode", "to_version"]
    search_fields = ["cluster__name", "to_version", "reason"]
    ordering_fields = ["created_at", "finished_at", "state"]
    action_permissions = {"resume": "upgrade", "cancel": "upgrade"}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action != "list":
            queryset = queryset.prefetch_related("nodes__transitions")
        return queryset

    def get_serializer_class(self):
        return UpgradeSerializer if self.action == "list" else UpgradeDetailSerializer

    def _answer(self, upgrade: Upgrade, code=status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=upgrade.pk)
        return Response(UpgradeDetailSerializer(fresh, context=self.get_serializer_context()).data, status=code)

    @extend_schema(request=None, responses={202: UpgradeDetailSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Continue a paused upgrade from where it stopped (after fixing what paused it)."""
        upgrade = self.get_object()
        try:
            upgrades.resume_upgrade(upgrade, user=request.user)
        except upgrades.UpgradeError as exc:
            return conflict(str(exc))
        return self._answer(upgrade, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=UpgradeDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop the upgrade: no new node starts, nodes being upgraded finish, cordoned nodes are uncordoned."""
        upgrade = self.get_object()
        try:
            upgrades.cancel_upgrade(upgrade, user=request.user)
        except upgrades.UpgradeError as exc:
            return conflict(str(exc))
        return self._answer(upgrade)
