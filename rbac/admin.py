from django.contrib import admin

from portal.admin_base import PortalModelAdmin
from rbac.models import (
    ClusterRoleBinding,
    GlobalRole,
    GlobalRoleBinding,
    Group,
    ProjectRoleBinding,
    RoleTemplate,
)


class BuiltinReadOnlyMixin:
    """Built-in roles are kept in step with the code; they can be read but not edited here."""

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.builtin:
            return [f.name for f in self.model._meta.fields]
        return super().get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.builtin:
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Group)
class GroupAdmin(PortalModelAdmin):
    list_display = ["name", "provider", "description"]
    list_filter = ["provider"]
    search_fields = ["name"]
    filter_horizontal = ["members"]


@admin.register(GlobalRole)
class GlobalRoleAdmin(BuiltinReadOnlyMixin, PortalModelAdmin):
    list_display = ["name", "builtin", "description"]
    search_fields = ["name"]


@admin.register(RoleTemplate)
class RoleTemplateAdmin(BuiltinReadOnlyMixin, PortalModelAdmin):
    list_display = ["name", "context", "builtin", "description"]
    list_filter = ["context", "builtin"]
    search_fields = ["name"]


class BindingAdmin(PortalModelAdmin):
    list_display = ["role", "user", "group", "created_at", "created_by"]
    search_fields = ["user__username", "group__name", "role__name"]
    readonly_fields = ["created_by", "created_at"]


@admin.register(GlobalRoleBinding)
class GlobalRoleBindingAdmin(BindingAdmin):
    list_filter = ["role"]


@admin.register(ClusterRoleBinding)
class ClusterRoleBindingAdmin(BindingAdmin):
    list_display = ["cluster", *BindingAdmin.list_display]
    list_filter = ["role", "cluster"]


@admin.register(ProjectRoleBinding)
class ProjectRoleBindingAdmin(BindingAdmin):
    list_display = ["project", *BindingAdmin.list_display]
    list_filter = ["role", "project__cluster"]
