from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from clusters import inventory, kube, schema
from clusters.forms import NAME_NOT_AVAILABLE
from clusters.models import Cluster, ClusterConfigVersion, Node, Project
from clusters.validators import validate_cluster_name
from portal.api.serializers import PortalSerializer, RestrictedRelatedField, SecretField


class ClusterSerializer(PortalSerializer):
    capability_actions = ("view", "change", "delete", "upgrade", "snapshot", "restore", "scan", "sync")
    kubeconfig = SecretField(help_text="Kubeconfig with credentials; checked on save; reading returns a mask")
    allow_insecure_tls = serializers.BooleanField(
        write_only=True, required=False, default=False,
        help_text="Admins only, audited: accept a kubeconfig with insecure-skip-tls-verify: true (the server's "
                  "certificate is then not checked)",
    )
    url = serializers.HyperlinkedIdentityField(view_name="api:cluster-detail")

    class Meta:
        model = Cluster
        fields = ["id", "url", "name", "description", "kind", "state", "state_reason", "kubernetes_version",
                  "api_server", "node_count", "kubeconfig", "created_by", "created_at", "updated_at",
                  "last_synced_at", "insecure_tls", "allow_insecure_tls", "capabilities"]
        read_only_fields = ["kind", "state", "state_reason", "kubernetes_version", "api_server", "node_count",
                            "created_by", "created_at", "updated_at", "last_synced_at", "insecure_tls"]

    def get_capabilities(self, obj: Cluster) -> dict[str, bool]:
        """``scan`` is whether a scan of this cluster may start: ``scan.scan`` in its scope (scans/services.py), not
        a permission on the cluster object."""
        caps = super().get_capabilities(obj)
        if "scan" in caps:
            from scans.services import may_scan

            caps["scan"] = may_scan(self.context["request"].user, obj)
        return caps

    def get_fields(self) -> dict[str, serializers.Field]:
        """A taken name is answered alike whoever holds it: DRF's "already exists" would reveal other tenants."""
        fields = super().get_fields()
        for validator in fields["name"].validators:
            if isinstance(validator, UniqueValidator):
                validator.message = NAME_NOT_AVAILABLE
        return fields

    def validate_name(self, value: str) -> str:
        try:
            validate_cluster_name(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value

    def validate(self, attrs):
        """Every kubeconfig is tried before it is saved (reachable, credentials accepted, version read), and
        only once every other field is valid, so a refused request contacts nothing.

        ``allow_insecure_tls`` is honoured for admins only; the cluster then keeps ``insecure_tls``.
        """
        attrs = super().validate(attrs)
        allow = attrs.pop("allow_insecure_tls", False)
        request = self.context.get("request")
        if allow and not inventory.may_skip_tls_verify(getattr(request, "user", None)):
            raise serializers.ValidationError({"allow_insecure_tls": [inventory.INSECURE_REFUSED]})
        kubeconfig = attrs.get("kubeconfig")
        if not kubeconfig:
            if allow:
                raise serializers.ValidationError({"allow_insecure_tls": [
                    "Send it together with the kubeconfig it is for."]})
            return attrs
        try:
            view = inventory.check_kubeconfig(kubeconfig, allow_insecure=allow)
        except kube.KubeconfigError as exc:
            raise serializers.ValidationError({"kubeconfig": [str(exc)]}) from None
        except kube.ClusterError as exc:
            raise serializers.ValidationError({"kubeconfig": [f"The cluster could not be used: {exc.reason}"]}) from None
        taken = inventory.server_taken(view.server, getattr(request, "user", None),
                                       exclude_pk=self.instance.pk if self.instance is not None else None)
        if taken:
            raise serializers.ValidationError({"kubeconfig": [taken]})
        self.context["cluster_view"] = view
        attrs["insecure_tls"] = view.insecure_tls
        return attrs

    def update(self, instance, validated_data):
        instance = super().update(instance, validated_data)
        if validated_data.get("insecure_tls"):
            inventory.audit_insecure_tls(instance, self.context["request"].user, self.context["cluster_view"].server)
        return instance

    def create(self, validated_data):
        validated_data.pop("insecure_tls", None)  # the checked view carries it to the import
        try:
            return inventory.import_cluster(user=self.context["request"].user, view=self.context["cluster_view"],
                                            **validated_data)
        except IntegrityError:  # lost a race for the name: the same answer as the unique check
            raise serializers.ValidationError({"name": [NAME_NOT_AVAILABLE]}) from None


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

        if self.instance is not None and cluster.pk != self.instance.cluster_id:
            raise serializers.ValidationError("A project cannot move to another cluster.")
        return cluster
