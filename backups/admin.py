"""Backups in admin: targets (keys masked), snapshots (take, restore, delete everywhere), restores with reports."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from backups import services
from backups.models import BackupTarget, Restore, Snapshot
from clusters.models import Cluster
from portal.admin import progress_bar, status_badge
from portal.admin_base import PortalModelAdmin, ReadOnlyAdminMixin
from portal.crypto import mask
from rbac import access

SNAPSHOT_COLOURS = {"pending": "#6c757d", "saving": "#0d6efd", "ready": "#198754", "failed": "#dc3545",
                    "missing": "#fd7e14"}


class BackupTargetForm(forms.ModelForm):
    """Keys are written, never shown: an empty key field on change keeps the stored one."""

    access_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                 help_text="Stored encrypted; leave empty to keep the current one")
    secret_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                 help_text="Stored encrypted; leave empty to keep the current one")

    class Meta:
        model = BackupTarget
        fields = ["name", "cluster", "endpoint", "region", "bucket", "folder", "access_key", "secret_key",
                  "endpoint_ca"]

    def clean(self):
        data = super().clean()
        for key in ("access_key", "secret_key"):
            if not data.get(key):
                if self.instance.pk and getattr(self.instance, key):
                    data[key] = getattr(self.instance, key)
                else:
                    self.add_error(key, "Required.")
        return data


@admin.register(BackupTarget)
class BackupTargetAdmin(PortalModelAdmin):
    form = BackupTargetForm
    list_display = ["name", "cluster", "location_col", "region", "access_key_col"]
    list_filter = ["cluster"]
    search_fields = ["name", "bucket", "endpoint"]

    @admin.display(description="Location")
    def location_col(self, target: BackupTarget) -> str:
        return f"{target.location} at {target.endpoint}"

    @admin.display(description="Access key")
    def access_key_col(self, target: BackupTarget) -> str:
        return mask(target.access_key)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


def snapshot_badge(snapshot: Snapshot):
    return format_html('<span class="corral-badge" style="background:{}" title="{}">{}</span>',
                       SNAPSHOT_COLOURS.get(snapshot.state, "#6c757d"), snapshot.reason, snapshot.get_state_display())


class RestoreForm(forms.Form):
    parts = forms.ChoiceField(choices=Restore.Parts.choices, initial=Restore.Parts.ETCD, widget=forms.RadioSelect,
                              label="Restore")


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdminMixin, PortalModelAdmin):
    list_display = ["name", "cluster", "trigger", "state_col", "progress_col", "kubernetes_version", "size",
                    "where_col", "created_at"]
    list_filter = ["state", "trigger", "kind", "cluster"]
    search_fields = ["name", "cluster__name"]
    list_select_related = ["cluster", "target", "job"]
    date_hierarchy = "created_at"
    actions = ["delete_everywhere"]
    change_form_template = "admin/backups/snapshot/change_form.html"
    fields = ["name", "cluster", "kind", "trigger", "state", "reason", "job", "node", "location", "s3_location",
              "kubernetes_version", "config_version", "etcd_revision", "size", "sha256", "cluster_uid", "created_by",
              "created_at", "taken_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deleting is a job that removes every copy: the action below
        return actions

    @admin.display(description="State", ordering="state")
    def state_col(self, snapshot: Snapshot):
        return snapshot_badge(snapshot)

    @admin.display(description="Progress")
    def progress_col(self, snapshot: Snapshot):
        if snapshot.state == Snapshot.State.READY:
            return progress_bar(100)
        return progress_bar(snapshot.job.progress if snapshot.job_id and snapshot.job else 0)

    @admin.display(description="Copies")
    def where_col(self, snapshot: Snapshot) -> str:
        return ", ".join(p for p in (snapshot.node and f"disk of {snapshot.node}", snapshot.s3_location) if p) or "—"

    @admin.action(description="Delete selected snapshots everywhere (nodes, bucket, Corral)")
    def delete_everywhere(self, request, queryset):
        by_cluster: dict[int, list[Snapshot]] = {}
        for snapshot in queryset.select_related("cluster"):
            by_cluster.setdefault(snapshot.cluster_id, []).append(snapshot)
        try:
            with transaction.atomic():  # one refusal deletes nothing, as Django's "delete selected"
                for group in by_cluster.values():
                    services.delete_snapshots(group, user=request.user)
        except access.WriteRefused as exc:
            messages.error(request, str(exc) or f"You may not delete snapshots of {group[0].cluster}.")
            return
        self.message_user(request, f"Deleting {queryset.count()} snapshot(s): a job removes every copy.")

    def get_urls(self):
        own = [
            path("take/<int:cluster_pk>/", self.admin_site.admin_view(self.take_view), name="backups_snapshot_take"),
            path("<int:pk>/restore/", self.admin_site.admin_view(self.restore_view), name="backups_snapshot_restore"),
        ]
        return own + super().get_urls()

    def take_view(self, request, cluster_pk):
        """The cluster page's "Take snapshot" button: a one-off snapshot to the config's default target."""
        cluster = get_object_or_404(access.restrict(Cluster.objects.all(), request.user, "view"), pk=cluster_pk)
        back = HttpResponseRedirect(reverse("admin:clusters_cluster_change", args=[cluster.pk]))
        if request.method != "POST":
            return back
        try:
            snapshot = services.take_snapshot(cluster, user=request.user)
        except access.WriteRefused as exc:
            messages.error(request, str(exc) if "target" in str(exc) else f"You may not take snapshots of {cluster.name}.")
            return back
        except services.BackupError as exc:
            messages.error(request, str(exc))
            return back
        messages.success(request, f"Taking snapshot {snapshot.name}.")
        return HttpResponseRedirect(reverse("admin:portal_job_change", args=[snapshot.job_id]))

    def restore_view(self, request, pk):
        snapshot = get_object_or_404(self.get_queryset(request), pk=pk)
        form = RestoreForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                restore = services.restore_snapshot(snapshot, parts=form.cleaned_data["parts"], user=request.user)
            except access.WriteRefused:
                messages.error(request, f"You may not restore {snapshot.cluster}.")
            except services.BackupError as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"Restoring {snapshot.name}.")
                return HttpResponseRedirect(reverse("admin:backups_restore_change", args=[restore.pk]))
        context = {**self.admin_site.each_context(request), "title": f"Restore {snapshot.name}",
                   "snapshot": snapshot, "form": form, "opts": self.model._meta,
                   "may_restore": access.can(request.user, "restore", snapshot.cluster)}
        return TemplateResponse(request, "admin/backups/snapshot/restore.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        snapshot = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if snapshot is not None:
            context["may_restore"] = (snapshot.state == Snapshot.State.READY
                                      and access.can(request.user, "restore", snapshot.cluster))
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(Restore)
class RestoreAdmin(ReadOnlyAdminMixin, PortalModelAdmin):
    list_display = ["__str__", "cluster", "state_col", "progress_col", "created_by", "created_at", "finished_at"]
    list_filter = ["state", "parts", "cluster"]
    search_fields = ["snapshot_name", "cluster__name"]
    list_select_related = ["cluster", "job", "created_by"]
    fields = ["cluster", "snapshot", "snapshot_name", "parts", "state", "reason", "job", "steps_col",
              "difference_col", "created_by", "created_at", "finished_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    @admin.display(description="State", ordering="state")
    def state_col(self, restore: Restore):
        return status_badge(restore.state, restore.get_state_display())

    @admin.display(description="Progress")
    def progress_col(self, restore: Restore):
        if restore.state == Restore.State.SUCCEEDED:
            return progress_bar(100)
        return progress_bar(restore.job.progress if restore.job_id and restore.job else 0)

    @admin.display(description="Steps")
    def steps_col(self, restore: Restore):
        steps = (restore.report or {}).get("steps") or []
        return format_html("<ol>{}</ol>", format_html("".join("<li>{}</li>" for _ in steps), *steps)) if steps else "—"

    @admin.display(description="Difference from the snapshot")
    def difference_col(self, restore: Restore):
        diff = (restore.report or {}).get("difference")
        if diff is None:
            return "—"
        missing, extra = diff.get("missing") or [], diff.get("extra") or []
        if not missing and not extra:
            return "None: the cluster's objects are the snapshot's (events, leases and endpoints left out)."
        words = [f"missing: {'/'.join(p for p in item if p)}" for item in missing[:50]]
        words += [f"not in the snapshot: {'/'.join(p for p in item if p)}" for item in extra[:50]]
        return format_html("<ul>{}</ul>", format_html("".join("<li>{}</li>" for _ in words), *words))
