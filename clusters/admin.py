from django.contrib import admin

from clusters import services
from clusters.models import Cluster, Project
from portal.admin_base import PortalModelAdmin


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ["name", "description", "namespaces"]

    def has_add_permission(self, request, obj=None):
        from rbac import access

        return obj is not None and access.can_create(request.user, Project, cluster_id=obj.pk)

    def has_change_permission(self, request, obj=None):
        from rbac import access

        return obj is not None and access.can(request.user, "change", obj)

    has_delete_permission = has_change_permission


@admin.register(Cluster)
class ClusterAdmin(PortalModelAdmin):
    list_display = ["name", "kind", "state", "kubernetes_version", "last_synced_at"]
    list_filter = ["kind", "state"]
    search_fields = ["name", "description"]
    readonly_fields = ["api_server", "created_by", "created_at", "updated_at", "last_synced_at"]
    inlines = [ProjectInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:
            services.grant_owner(obj, request.user)


@admin.register(Project)
class ProjectAdmin(PortalModelAdmin):
    list_display = ["name", "cluster", "description"]
    list_filter = ["cluster"]
    search_fields = ["name", "cluster__name"]
