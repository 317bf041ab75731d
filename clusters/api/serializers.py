from django.db import IntegrityError
from rest_framework import serializers

from clusters import inventory, kube, schema
from clusters.models import Cluster, ClusterConfigVersion, Node, Project
from portal.api.serializers import PortalSerializer, RestrictedRelatedField, SecretField


class ClusterSerializer(PortalSerializer):
    capability_actions = ("view", "change", "delete", "upgrade", "snapshot", "restore", "scan", "sync")
    kubeconfig = SecretField(help_text="Kubeconfig with credentials; checked on save; reading returns a mask")
    url = serializers.HyperlinkedIdentityField(view_name="api:cluster-detail")

    class Meta:
        model = Cluster
        fields = ["id", "url", "name", "description", "kind", "state", "state_reason", "kubernetes_version",
                  "api_server", "node_count", "kubeconfig", "created_by", "created_at", "updated_at",
                  "last_synced_at", "capabilities"]
        read_only_fields = ["kind", "state", "state_reason", "kubernetes_version", "api_server", "node_count",
                            "created_by", "created_at", "updated_at", "last_synced_at"]

    def validate_kubeconfig(self, value: str) -> str:
        """Every kubeconfig is tried before it is saved: reachable, credentials accepted, version read."""
        try:
            self.context["cluster_view"] = inventory.check_kubeconfig(value)
        except kube.KubeconfigError as exc:
            raise serializers.ValidationError(str(exc)) from None
        except kube.ClusterError as exc:
            raise serializers.ValidationError(f"The cluster could not be used: {exc.reason}") from None
        return value

    def create(self, validated_data):
        try:
            return inventory.import_cluster(user=self.context["request"].user, view=self.context["cluster_view"],
                                            **validated_data)
        except IntegrityError:
            raise serializers.ValidationError({"name": "A cluster with this name already exists."}) from None


class NodeSerializer(PortalSerializer):
    capability_actions = ("view",)
    state = serializers.CharField(read_only=True)

    class Meta:
        model = Node
        fields = ["id", "cluster", "name", "state", "roles", "kubelet_version", "os_image", "kernel_version",
                  "container_runtime", "internal_ip", "ready", "unschedulable", "conditions", "capacity",
                  "allocatable", "taints", "labels", "created_in_cluster_at", "synced_at", "capabilities"]
        read_only_fields = fields


class ConfigVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.StringRelatedField()

    class Meta:
        model = ClusterConfigVersion
        fields = ["version", "document", "source", "comment", "created_by", "created_at"]
        read_only_fields = fields


class ConfigWriteSerializer(serializers.Serializer):
    """A new config: a YAML text (``yaml``) or a JSON document (``document``)."""

    yaml = serializers.CharField(required=False, trim_whitespace=False)
    document = serializers.DictField(required=False)
    comment = serializers.CharField(required=False, allow_blank=True, max_length=300)

    def validate(self, attrs):
        if bool(attrs.get("yaml")) == bool(attrs.get("document")):
            raise serializers.ValidationError("Send either a YAML text (yaml) or a JSON document (document).")
        return attrs


class UpgradeRequestSerializer(serializers.Serializer):
    kubernetes_version = serializers.CharField()
    mode = serializers.ChoiceField(choices=["rolling", "parallel"], required=False)


def config_error_detail(exc: schema.ConfigError) -> dict:
    return exc.by_field()


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
