"""Upgrades in admin: read-only, with a live progress bar and a per-node table of states and transition times."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from clusters import upgrades
from clusters.models import NodeUpgrade, Upgrade
from clusters.upgrades.records import label
from portal.admin import STATUS_COLOURS, progress_bar, status_badge
from portal.admin_base import PortalModelAdmin, ReadOnlyAdminMixin
from rbac import access

NODE_COLOURS = {
    "pending": "#6c757d", "cordoned": "#6f42c1", "draining": "#fd7e14", "drained": "#fd7e14",
    "upgrading": "#0d6efd", "upgraded": "#20c997", "active": "#198754", "failed": "#dc3545",
}


def upgrade_percent(upgrade: Upgrade) -> int:
    if upgrade.state == Upgrade.State.SUCCEEDED:
        return 100
    return upgrade.job.progress if upgrade.job_id and upgrade.job else 0


@admin.register(Upgrade)
class UpgradeAdmin(ReadOnlyAdminMixin, PortalModelAdmin):
    change_form_template = "admin/clusters/upgrade/change_form.html"
    list_display = ["__str__", "cluster", "mode", "state_col", "progress_col", "created_by", "created_at", "finished_at"]
    list_filter = ["state", "mode", "cluster"]
    search_fields = ["cluster__name", "to_version", "reason"]
    list_select_related = ["cluster", "job", "created_by"]
    date_hierarchy = "created_at"
    fields = ["cluster", "from_version", "to_version", "mode", "state", "reason", "job", "strategy", "created_by",
              "created_at", "finished_at"]

    @admin.display(description="State", ordering="state")
    def state_col(self, upgrade: Upgrade):
        return status_badge(upgrade.state, upgrade.get_state_display())

    @admin.display(description="Progress")
    def progress_col(self, upgrade: Upgrade):
        return progress_bar(upgrade_percent(upgrade))

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def get_urls(self):
        own = [
            path("<int:pk>/resume/", self.admin_site.admin_view(self.resume_view), name="clusters_upgrade_resume"),
            path("<int:pk>/cancel/", self.admin_site.admin_view(self.cancel_view), name="clusters_upgrade_cancel"),
        ]
        return own + super().get_urls()

    def _control(self, request, pk, operation, verb: str):
        upgrade = get_object_or_404(self.get_queryset(request), pk=pk)
        back = HttpResponseRedirect(reverse("admin:clusters_upgrade_change", args=[pk]))
        if request.method != "POST":
            return back
        try:
            operation(upgrade, user=request.user)
        except access.WriteRefused:
            messages.error(request, f"You may not {verb} upgrades of {upgrade.cluster}.")
        except upgrades.UpgradeError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Upgrade {verb} requested.")
        return back

    def resume_view(self, request, pk):
        return self._control(request, pk, upgrades.resume_upgrade, "resume")

    def cancel_view(self, request, pk):
        return self._control(request, pk, upgrades.cancel_upgrade, "cancel")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        upgrade = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if upgrade is not None:
            may = access.can(request.user, "upgrade", upgrade)
            nodes = list(NodeUpgrade.objects.filter(upgrade=upgrade).prefetch_related("transitions")
                         .order_by("batch", "node_name"))
            context.update(
                upgrade=upgrade,
                upgrade_percent=upgrade_percent(upgrade),
                node_rows=[self._node_row(n) for n in nodes],
                nodes_done=sum(n.state == NodeUpgrade.State.ACTIVE for n in nodes),
                can_resume=may and upgrades.resumable(upgrade),
                can_cancel=may and upgrades.cancellable(upgrade),
                live=upgrade.state in (Upgrade.State.RUNNING,) or (upgrade.job and upgrade.job.status in ("queued", "running")),
                state_colours={**STATUS_COLOURS, **NODE_COLOURS},
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    @staticmethod
    def _node_row(node: NodeUpgrade) -> dict:
        return {
            "name": node.node_name, "role": node.role, "batch": node.batch + 1, "state": node.state,
            "state_label": label(node.state) if node.state != "pending" else "Waiting",
            "badge": format_html('<span class="corral-badge" style="background:{}">{}</span>',
                                 NODE_COLOURS.get(node.state, "#6c757d"),
                                 label(node.state) if node.state != "pending" else "Waiting"),
            "message": node.message,
            "transitions": [(label(t.to_state), t.at) for t in node.transitions.all()],
        }
