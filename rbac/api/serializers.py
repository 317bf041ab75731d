from django.contrib.auth import get_user_model
from rest_framework import serializers

from clusters.models import Cluster, Project
from portal.api.serializers import PortalSerializer, RestrictedRelatedField
from rbac.models import (
    ClusterRoleBinding,
    GlobalRole,
    GlobalRoleBinding,
    Group,
    ProjectRoleBinding,
    RoleTemplate,
)
from rbac.permissions import validate_permissions

User = get_user_model()


class UserSerializer(PortalSerializer):
    groups = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "username", "first_name", "last_name", "email", "is_active", "groups", "capabilities"]
        read_only_fields = ["groups"]

    def get_groups(self, user) -> list[str]:
        return [str(g) for g in user.corral_groups.all()]


class GroupSerializer(PortalSerializer):
    members = RestrictedRelatedField(queryset=User.objects.all(), many=True, required=False)

    class Meta:
        model = Group
        fields = ["id", "name", "provider", "description", "members", "capabilities"]
        read_only_fields = ["provider"]

    def validate(self, attrs):
        if self.instance is not None and self.instance.is_external and "members" in attrs:
            raise serializers.ValidationError(
                {"members": "Members of an identity-provider group come from the IdP at each login."}
            )
        return attrs

    def create(self, validated_data):
        from rbac.services import set_group_members

        members = validated_data.pop("members", [])
        group = Group.objects.create(**validated_data)
        set_group_members(group, members, acting_user=self.context["request"].user, action="add")
        return group

    def update(self, instance, validated_data):
        from rbac.services import set_group_members

        members = validated_data.pop("members", None)
        instance = super().update(instance, validated_data)
        if members is not None:
            set_group_members(instance, members, acting_user=self.context["request"].user)
        return instance


class RoleSerializerMixin:
    def validate_permissions(self, value):
        from django.core.exceptions import ValidationError as DjangoValidationError

        try:
            validate_permissions(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return value

    def validate(self, attrs):
        if self.instance is not None and self.instance.builtin:
            raise serializers.ValidationError("Built-in roles cannot be changed; make a custom role instead.")
        return attrs


class GlobalRoleSerializer(RoleSerializerMixin, PortalSerializer):
    class Meta:
        model = GlobalRole
        fields = ["id", "name", "description", "builtin", "permissions", "capabilities"]
        read_only_fields = ["builtin"]


class RoleTemplateSerializer(RoleSerializerMixin, PortalSerializer):
    class Meta:
        model = RoleTemplate
        fields = ["id", "name", "context", "description", "builtin", "permissions", "capabilities"]
        read_only_fields = ["builtin"]


class BindingSerializer(PortalSerializer):
    user = RestrictedRelatedField(queryset=User.objects.all(), required=False, allow_null=True)
    group = RestrictedRelatedField(queryset=Group.objects.all(), required=False, allow_null=True)

    def validate(self, attrs):
        user = attrs.get("user", getattr(self.instance, "user", None))
        group = attrs.get("group", getattr(self.instance, "group", None))
        if bool(user) == bool(group):
            raise serializers.ValidationError("Bind the role to either a user or a group, not both or neither.")
        return attrs


class GlobalRoleBindingSerializer(BindingSerializer):
    role = RestrictedRelatedField(queryset=GlobalRole.objects.all())

    class Meta:
        model = GlobalRoleBinding
        fields = ["id", "role", "user", "group", "created_at", "created_by", "capabilities"]
        read_only_fields = ["created_at", "created_by"]


class ClusterRoleBindingSerializer(BindingSerializer):
    cluster = RestrictedRelatedField(queryset=Cluster.objects.all())
    role = RestrictedRelatedField(queryset=RoleTemplate.objects.filter(context="cluster"))

    class Meta:
        model = ClusterRoleBinding
        fields = ["id", "cluster", "role", "user", "group", "created_at", "created_by", "capabilities"]
        read_only_fields = ["created_at", "created_by"]


class ProjectRoleBindingSerializer(BindingSerializer):
    project = RestrictedRelatedField(queryset=Project.objects.all())
    role = RestrictedRelatedField(queryset=RoleTemplate.objects.filter(context="project"))

    class Meta:
        model = ProjectRoleBinding
        fields = ["id", "project", "role", "user", "group", "created_at", "created_by", "capabilities"]
        read_only_fields = ["created_at", "created_by"]
