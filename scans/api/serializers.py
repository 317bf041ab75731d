from __future__ import annotations

from rest_framework import serializers

from clusters.models import Cluster
from notifiers.models import Notifier
from portal.api.serializers import PortalSerializer, RestrictedRelatedField
from scans import benchmarks, cron, services
from scans.models import CheckResult, Scan, ScanAlert, ScanProfile, ScanSchedule


class ScanProfileSerializer(PortalSerializer):
    benchmark = serializers.ChoiceField(choices=[])
    skips = serializers.DictField(child=serializers.CharField(), required=False,
                                  help_text='Checks to skip, each with its reason: {"1.2.16": "why"}')

    class Meta:
        model = ScanProfile
        fields = ["id", "name", "description", "benchmark", "skips", "builtin", "created_at", "updated_at",
                  "capabilities"]
        read_only_fields = ["builtin", "created_at", "updated_at"]

    def get_fields(self):
        fields = super().get_fields()
        fields["benchmark"].choices = sorted(benchmarks.all_benchmarks())
        return fields

    def validate(self, attrs):
        if self.instance is not None and self.instance.builtin:
            raise serializers.ValidationError("Built-in profiles cannot be changed; make your own from them.")
        bench = attrs.get("benchmark", getattr(self.instance, "benchmark", ""))
        errors = benchmarks.profile_errors(bench, attrs.get("skips", getattr(self.instance, "skips", {})))
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class CheckResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = CheckResult
        fields = ["check_id", "section", "title", "level", "scored", "node_type", "source", "result", "reason",
                  "remediation", "evidence"]
        read_only_fields = fields


class ScanSerializer(PortalSerializer):
    capability_actions = ("view", "delete")
    url = serializers.HyperlinkedIdentityField(view_name="api:scan-detail")
    cluster_name = serializers.CharField(source="cluster.name", read_only=True)
    counts = serializers.DictField(read_only=True)
    job_status = serializers.CharField(source="job.status", read_only=True, default=None)
    progress = serializers.IntegerField(source="job.progress", read_only=True, default=0)
    created_by = serializers.StringRelatedField()

    class Meta:
        model = Scan
        fields = ["id", "url", "cluster", "cluster_name", "profile", "profile_name", "benchmark", "trigger", "schedule",
                  "state", "reason", "kubernetes_version", "distribution", "counts", "score", "job", "job_status",
                  "progress", "created_by", "created_at", "finished_at", "capabilities"]
        read_only_fields = fields


class ScanDetailSerializer(ScanSerializer):
    class Meta(ScanSerializer.Meta):
        fields = ScanSerializer.Meta.fields + ["sections", "raw"]
        read_only_fields = fields


class ScanRequestSerializer(serializers.Serializer):
    profile = RestrictedRelatedField(queryset=ScanProfile.objects.all(), required=False, allow_null=True,
                                     help_text="Profile id; by default the built-in permissive profile for the cluster")


class ScanScheduleSerializer(PortalSerializer):
    cluster = RestrictedRelatedField(queryset=Cluster.objects.all())
    profile = RestrictedRelatedField(queryset=ScanProfile.objects.all())

    class Meta:
        model = ScanSchedule
        fields = ["id", "cluster", "profile", "cron", "keep_last", "enabled", "last_run_at", "next_run_at",
                  "created_at", "capabilities"]
        read_only_fields = ["last_run_at", "next_run_at", "created_at"]

    def validate_cron(self, value: str) -> str:
        try:
            cron.parse(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return " ".join(value.split())

    def validate_keep_last(self, value: int) -> int:
        if value < 1:
            raise serializers.ValidationError("Keep at least one report.")
        return value

    def validate(self, attrs):
        cluster = attrs.get("cluster", getattr(self.instance, "cluster", None))
        if self.instance is not None and "cluster" in attrs and attrs["cluster"].pk != self.instance.cluster_id:
            raise serializers.ValidationError({"cluster": ["A schedule cannot move to another cluster."]})
        profile = attrs.get("profile", getattr(self.instance, "profile", None))
        try:
            services.check_profile_fits(cluster, profile)
        except services.ScanRefused as exc:
            raise serializers.ValidationError({"profile": [str(exc)]}) from None
        attrs["next_run_at"] = None  # computed afresh from the cron line by the dispatcher
        return attrs


class ScanAlertSerializer(PortalSerializer):
    schedule = RestrictedRelatedField(queryset=ScanSchedule.objects.all())
    notifier = RestrictedRelatedField(queryset=Notifier.objects.all())

    class Meta:
        model = ScanAlert
        fields = ["id", "schedule", "notifier", "when", "capabilities"]

    def validate(self, attrs):
        if self.instance is not None and "schedule" in attrs and attrs["schedule"].pk != self.instance.schedule_id:
            raise serializers.ValidationError({"schedule": ["An alert rule stays with its schedule."]})
        return attrs
