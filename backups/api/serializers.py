from __future__ import annotations

from rest_framework import serializers

from backups.models import BackupTarget, Restore, Snapshot
from clusters.models import Cluster
from portal.api.serializers import PortalSerializer, RestrictedRelatedField, SecretField


class BackupTargetSerializer(PortalSerializer):
    url = serializers.HyperlinkedIdentityField(view_name="api:backuptarget-detail")
    cluster = RestrictedRelatedField(queryset=Cluster.objects.all(), required=False, allow_null=True,
                                     help_text="Empty: a fleet-wide target (global roles only)")
    access_key = SecretField(help_text="Stored encrypted; reading returns a mask")
    secret_key = SecretField(help_text="Stored encrypted; reading returns a mask")

    class Meta:
        model = BackupTarget
        fields = ["id", "url", "name", "cluster", "endpoint", "region", "bucket", "folder", "access_key", "secret_key",
                  "endpoint_ca", "created_by", "created_at", "capabilities"]
        read_only_fields = ["created_by", "created_at"]


class SnapshotSerializer(PortalSerializer):
    capability_actions = ("view", "delete")
    url = serializers.HyperlinkedIdentityField(view_name="api:snapshot-detail")
    cluster_name = serializers.CharField(source="cluster.name", read_only=True)
    target_name = serializers.CharField(source="target.name", read_only=True, default=None)
    job_status = serializers.CharField(source="job.status", read_only=True, default=None)
    progress = serializers.IntegerField(source="job.progress", read_only=True, default=None)
    created_by = serializers.StringRelatedField()
    restorable = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = ["id", "url", "cluster", "cluster_name", "name", "kind", "trigger", "state", "reason", "target",
                  "target_name", "node", "location", "s3_location", "kubernetes_version", "config_version",
                  "etcd_revision", "size", "sha256", "job", "job_status", "progress", "created_by", "created_at",
                  "taken_at", "restorable", "capabilities"]
        read_only_fields = fields

    def get_restorable(self, obj: Snapshot) -> bool:
        from rbac import access

        request = self.context.get("request")
        return (obj.state == Snapshot.State.READY and request is not None
                and access.can(request.user, "restore", obj.cluster))


class SnapshotDetailSerializer(SnapshotSerializer):
    class Meta(SnapshotSerializer.Meta):
        fields = SnapshotSerializer.Meta.fields + ["config_document", "manifest"]
        read_only_fields = fields


class SnapshotRequestSerializer(serializers.Serializer):
    target = serializers.CharField(required=False, allow_blank=True, allow_null=True, default="",
                                   help_text='Backup target name; "" for the config\'s etcd_backup.target, null for '
                                             "the etcd nodes' disks only")
    include_namespaces = serializers.ListField(child=serializers.CharField(), required=False)
    exclude_namespaces = serializers.ListField(child=serializers.CharField(), required=False)
    include_kinds = serializers.ListField(child=serializers.CharField(), required=False)
    exclude_kinds = serializers.ListField(child=serializers.CharField(), required=False)


class RestoreRequestSerializer(serializers.Serializer):
    parts = serializers.ChoiceField(choices=Restore.Parts.choices, default=Restore.Parts.ETCD,
                                    help_text="etcd; kubernetes (etcd + Kubernetes version); all (+ cluster config)")


class DiscoverRequestSerializer(serializers.Serializer):
    cluster = serializers.IntegerField()
    target = serializers.CharField()


class RestoreSerializer(PortalSerializer):
    capability_actions = ("view",)
    url = serializers.HyperlinkedIdentityField(view_name="api:restore-detail")
    cluster_name = serializers.CharField(source="cluster.name", read_only=True)
    job_status = serializers.CharField(source="job.status", read_only=True, default=None)
    progress = serializers.IntegerField(source="job.progress", read_only=True, default=None)
    progress_message = serializers.CharField(source="job.progress_message", read_only=True, default="")
    created_by = serializers.StringRelatedField()

    class Meta:
        model = Restore
        fields = ["id", "url", "cluster", "cluster_name", "snapshot", "snapshot_name", "parts", "state", "reason",
                  "report", "job", "job_status", "progress", "progress_message", "created_by", "created_at",
                  "finished_at", "capabilities"]
        read_only_fields = fields
