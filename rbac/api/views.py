from django.contrib.auth import get_user_model
from rest_framework.decorators import action
from rest_framework.response import Response

from portal import audit
from portal.api.viewsets import PortalModelViewSet, PortalReadOnlyViewSet
from rbac.api import serializers as s
from rbac.models import (
    ClusterRoleBinding,
    GlobalRole,
    GlobalRoleBinding,
    Group,
    ProjectRoleBinding,
    RoleTemplate,
)


class UserViewSet(PortalReadOnlyViewSet):
    queryset = get_user_model().objects.prefetch_related("corral_groups").order_by("username")
    serializer_class = s.UserSerializer
    search_fields = ["username", "first_name", "last_name", "email"]
    filterset_fields = ["is_active"]

    @action(detail=False, methods=["get"])
    def me(self, request):
        """The caller, with their groups."""
        return Response(s.UserSerializer(request.user, context=self.get_serializer_context()).data)


class GroupViewSet(PortalModelViewSet):
    queryset = Group.objects.prefetch_related("members")
    serializer_class = s.GroupSerializer
    filterset_fields = ["provider", "name"]
    search_fields = ["name", "description"]


class BuiltinProtectedMixin:
    def perform_destroy(self, instance):
        from rest_framework.exceptions import PermissionDenied

        if instance.builtin:
            raise PermissionDenied("Built-in roles cannot be deleted.")
        super().perform_destroy(instance)


class GlobalRoleViewSet(BuiltinProtectedMixin, PortalModelViewSet):
    queryset = GlobalRole.objects.all()
    serializer_class = s.GlobalRoleSerializer
    filterset_fields = ["builtin", "name"]


class RoleTemplateViewSet(BuiltinProtectedMixin, PortalModelViewSet):
    queryset = RoleTemplate.objects.all()
    serializer_class = s.RoleTemplateSerializer
    filterset_fields = ["context", "builtin", "name"]


class BindingViewSet(PortalModelViewSet):
    """Role grants and revocations are audited as role changes."""

    def extra_create_fields(self) -> dict:
        return {"created_by": self.request.user}

    def perform_create(self, serializer):
        super().perform_create(serializer)
        audit.record("role_change", serializer.instance, message=f"granted {serializer.instance}")

    def perform_destroy(self, instance):
        audit.record("role_change", instance, message=f"revoked {instance}")
        super().perform_destroy(instance)


class GlobalRoleBindingViewSet(BindingViewSet):
    queryset = GlobalRoleBinding.objects.select_related("role", "user", "group")
    serializer_class = s.GlobalRoleBindingSerializer
    filterset_fields = ["role", "user", "group"]


class ClusterRoleBindingViewSet(BindingViewSet):
    queryset = ClusterRoleBinding.objects.select_related("role", "user", "group", "cluster")
    serializer_class = s.ClusterRoleBindingSerializer
    filterset_fields = ["cluster", "role", "user", "group"]


class ProjectRoleBindingViewSet(BindingViewSet):
    queryset = ProjectRoleBinding.objects.select_related("role", "user", "group", "project")
    serializer_class = s.ProjectRoleBindingSerializer
    filterset_fields = ["project", "role", "user", "group"]
