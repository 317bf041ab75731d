"""Clusters in admin: import by kubeconfig, live inventory, config as YAML with history, sync and upgrade."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from clusters import config as cluster_config
from clusters import inventory, schema, services
from clusters.forms import ClusterForm, ConfigYAMLForm
from clusters.models import Cluster, ClusterConfigVersion, Node, Project
from portal.admin_base import PortalModelAdmin, ReadOnlyAdminMixin
from rbac import access

STATE_COLOURS = {"active": "#198754", "upgrading": "#0d6efd", "restoring": "#6f42c1", "unavailable": "#dc3545",
                 "error": "#dc3545", "provisioning": "#6c757d"}


class ProjectInline(admin.TabularInline):
    model = Project
    extra = 0
    fields = ["name", "description", "namespaces"]

    def has_add_permission(self, request, obj=None):
        return obj is not None and access.can_create(request.user, Project, cluster_id=obj.pk)

    def has_change_permission(self, request, obj=None):
        return obj is not None and access.can(request.user, "change", obj)

    has_delete_permission = has_change_permission

    def get_queryset(self, request):
        # Django's own asks has_change_permission(request) without the cluster, False here: the rows would be
        # none for all but superusers, and their edits and deletions silently dropped. Rows are what one may see.
        return access.restrict(self.model._default_manager.all(), request.user, "view")


def roles_text(node: Node) -> str:
    return ", ".join(node.roles or []) or "—"


class NodeInline(admin.TabularInline):
    model = Node
    extra = 0
    can_delete = False
    classes = ["corral-readonly-rows"]
    fields = ["name", "roles_col", "state_col", "kubelet_version", "os_image", "container_runtime", "internal_ip"]
    readonly_fields = fields
    ordering = ["name"]

    @admin.display(description="State")
    def state_col(self, node: Node) -> str:
        return node.state

    @admin.display(description="Roles")
    def roles_col(self, node: Node) -> str:
        return roles_text(node)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Django's default asks for model permissions Corral does not use: nodes would show to superusers only.
        return request.user.is_active if obj is None else access.can(request.user, "view", obj)

    def get_queryset(self, request):
        return access.restrict(self.model._default_manager.all(), request.user, "view")


@admin.register(Cluster)
class ClusterAdmin(PortalModelAdmin):
    form = ClusterForm
    list_display = ["name", "kind", "state_col", "kubernetes_version", "node_count", "last_synced_at"]
    list_filter = ["kind", "state"]
    search_fields = ["name", "description"]
    readonly_fields = ["kind", "state", "state_reason", "kubernetes_version", "api_server", "node_count",
                       "created_by", "created_at", "updated_at", "last_synced_at", "config_col"]
    actions = ["sync_selected"]
    change_form_template = "admin/clusters/cluster/change_form.html"

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ["name", "description", "kubeconfig", "allow_insecure_tls"]})]
        return [
            (None, {"fields": ["name", "description", "kind", "state", "state_reason", "kubernetes_version",
                               "node_count", "last_synced_at", "config_col"]}),
            ("Connection", {"fields": ["api_server", "kubeconfig"]}),
            ("Record", {"classes": ["collapse"], "fields": ["created_by", "created_at", "updated_at"]}),
        ]

    def get_inlines(self, request, obj):
        return [NodeInline, ProjectInline] if obj is not None else []

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            from scans.services import may_scan

            context["may_scan"] = may_scan(request.user, obj)  # the "Run a scan" button
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    @admin.display(description="State", ordering="state")
    def state_col(self, cluster: Cluster):
        return format_html('<span class="corral-badge" style="background:{}" title="{}">{}</span>',
                           STATE_COLOURS.get(cluster.state, "#6c757d"), cluster.state_reason,
                           cluster.get_state_display())

    @admin.display(description="Config")
    def config_col(self, cluster: Cluster):
        latest = cluster.config
        url = reverse("admin:clusters_cluster_config", args=[cluster.pk])
        label = f"version {latest.version}" if latest else "not saved yet"
        return format_html('{} — <a href="{}">Edit as YAML / history</a>', label, url)

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        self.check_write(request, "add", obj)
        cluster = inventory.import_cluster(name=obj.name, description=obj.description, kubeconfig=obj.kubeconfig,
                                           user=request.user, view=form.cluster_view,
                                           allow_insecure_tls=bool(form.cleaned_data.get("allow_insecure_tls")))
        obj.pk = cluster.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    def get_urls(self):
        own = [
            path("<int:pk>/config/", self.admin_site.admin_view(self.config_view), name="clusters_cluster_config"),
            path("<int:pk>/sync/", self.admin_site.admin_view(self.sync_view), name="clusters_cluster_sync"),
        ]
        return own + super().get_urls()

    def _cluster(self, request, pk) -> Cluster:
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def config_view(self, request, pk):
        """Edit as YAML: validated against the schema; a new kubernetes_version starts an upgrade."""
        cluster = self._cluster(request, pk)
        can_change = access.can(request.user, "change", cluster)
        latest = cluster.config
        initial = latest.source if latest else schema.to_yaml(cluster_config.initial_document(cluster))
        form = ConfigYAMLForm(request.POST or None, cluster=cluster, initial={"yaml": initial})
        if request.method == "POST":
            if not can_change:
                messages.error(request, "You may not change this cluster's config.")
            elif form.is_valid():
                try:
                    version, job = cluster_config.apply(cluster, form.cleaned_data["yaml"], user=request.user,
                                                        comment=form.cleaned_data["comment"])
                except schema.ConfigError as exc:
                    form.add_error("yaml", [schema.ConfigError.format(e) for e in exc.errors])
                except access.WriteRefused as exc:
                    form.add_error("yaml", str(exc))
                else:
                    messages.success(request, f"Saved config version {version.version}.")
                    if job is not None:
                        messages.info(request, f"Upgrade to {version.document['kubernetes_version']} started.")
                        return HttpResponseRedirect(reverse("admin:portal_job_change", args=[job.pk]))
                    return HttpResponseRedirect(reverse("admin:clusters_cluster_config", args=[cluster.pk]))
        context = {
            **self.admin_site.each_context(request), "title": f"{cluster.name}: config", "cluster": cluster,
            "form": form, "can_change": can_change, "opts": self.model._meta,
            "history": ClusterConfigVersion.objects.filter(cluster=cluster).select_related("created_by")[:50],
            "supported": schema.SUPPORTED_VERSIONS.get(cluster.kind, []),
        }
        return TemplateResponse(request, "admin/clusters/cluster/config.html", context)

    def sync_view(self, request, pk):
        cluster = self._cluster(request, pk)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:clusters_cluster_change", args=[pk]))
        try:
            job = services.request_sync(cluster, user=request.user)
        except access.WriteRefused:
            messages.error(request, "You may not sync this cluster.")
            return HttpResponseRedirect(reverse("admin:clusters_cluster_change", args=[pk]))
        return HttpResponseRedirect(reverse("admin:portal_job_change", args=[job.pk]))

    @admin.action(description="Sync inventory now")
    def sync_selected(self, request, queryset):
        count = 0
        for cluster in access.restrict(queryset, request.user, "sync"):
            services.request_sync(cluster, user=request.user)
            count += 1
        self.message_user(request, f"Sync queued for {count} cluster(s).")


@admin.register(Node)
class NodeAdmin(ReadOnlyAdminMixin, PortalModelAdmin):
    list_display = ["name", "cluster", "roles_col", "state", "kubelet_version", "os_image", "synced_at"]
    list_filter = ["cluster", "ready", "unschedulable", "kubelet_version"]
    search_fields = ["name", "internal_ip", "cluster__name"]
    list_select_related = ["cluster"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Node._meta.fields]

    @admin.display(description="Roles")
    def roles_col(self, node: Node) -> str:
        return roles_text(node)


@admin.register(Project)
class ProjectAdmin(PortalModelAdmin):
    list_display = ["name", "cluster", "description"]

    def get_readonly_fields(self, request, obj=None):
        return ["cluster"] if obj is not None else []  # a project stays in its cluster, as in the API
    list_filter = ["cluster"]
    search_fields = ["name", "cluster__name"]

from clusters import admin_upgrades  # noqa: E402,F401 - registers the Upgrade admin
