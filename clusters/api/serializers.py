from rest_framework import serializers

from clusters.models import Cluster, Project
from portal.api.serializers import PortalSerializer, RestrictedRelatedField, SecretField


class ClusterSerializer(PortalSerializer):
    capability_actions = ("view", "change", "delete", "upgrade", "snapshot", "restore", "scan", "sync")
    kubeconfig = SecretField(help_text="Kubeconfig with credentials; reading returns a mask")

    class Meta:
        model = Cluster
        fields = ["id", "name", "description", "kind", "state", "state_reason", "kubernetes_version", "api_server",
                  "kubeconfig", "created_by", "created_at", "updated_at", "last_synced_at", "capabilities"]
        read_only_fields = ["state", "state_reason", "kubernetes_version", "api_server", "created_by", "created_at",
                            "updated_at", "last_synced_at"]


class ProjectSerializer(PortalSerializer):
    cluster = RestrictedRelatedField(queryset=Cluster.objects.all())

    class Meta:
        model = Project
        fields = ["id", "cluster", "name", "description", "namespaces", "created_at", "capabilities"]
        read_only_fields = ["created_at"]

    def validate_cluster(self, cluster):
        from rbac import access

        request = self.context["request"]
        if self.instance is None and not access.can_create(request.user, Project, cluster_id=cluster.pk):
            raise serializers.ValidationError("You may not add projects to this cluster.")
        if self.instance is not None and cluster.pk != self.instance.cluster_id:
            raise serializers.ValidationError("A project cannot move to another cluster.")
        return cluster
