"""CIS scans in admin: profiles, "Run a scan", reports (counts, SVG chart per section, filterable checks, CSV/JSON),
comparisons of two scans of one cluster, and schedules with their alert rules."""
from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from clusters.models import Cluster
from portal.admin_base import PortalModelAdmin
from rbac import access
from scans import reports, services
from scans.models import Scan, ScanAlert, ScanProfile, ScanSchedule

STATE_COLOURS = {"passed": "#198754", "failed": "#dc3545", "error": "#6f42c1", "running": "#0d6efd",
                 "queued": "#6c757d"}


@admin.register(ScanProfile)
class ScanProfileAdmin(PortalModelAdmin):
    list_display = ["name", "benchmark", "builtin", "skipped_col", "description"]
    list_filter = ["benchmark", "builtin"]
    search_fields = ["name", "description"]
    fields = ["name", "benchmark", "description", "skips", "builtin"]
    readonly_fields = ["builtin"]

    @admin.display(description="Skipped checks")
    def skipped_col(self, profile: ScanProfile) -> int:
        return len(profile.skips or {})

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.builtin:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and (obj.builtin or obj.schedules.exists()):
            return False
        return super().has_delete_permission(request, obj)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "benchmark":
            from scans import benchmarks

            return forms.ChoiceField(choices=[(b, b) for b in sorted(benchmarks.all_benchmarks())], label="Benchmark")
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class RunScanForm(forms.Form):
    cluster = forms.ModelChoiceField(queryset=Cluster.objects.none())
    profile = forms.ModelChoiceField(queryset=ScanProfile.objects.none(), required=False,
                                     help_text="Empty: the built-in permissive profile for the cluster's distribution")

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["cluster"].queryset = access.restrict(Cluster.objects.all(), user, "view")
        self.fields["profile"].queryset = access.restrict(ScanProfile.objects.all(), user, "view")


@admin.register(Scan)
class ScanAdmin(PortalModelAdmin):
    list_display = ["__str__", "cluster", "state_col", "trigger", "score", "passed", "failed", "warned",
                    "not_applicable", "skipped", "errored", "report_col"]
    list_filter = ["cluster", "state", "benchmark", "trigger"]
    search_fields = ["cluster__name", "profile_name"]
    list_select_related = ["cluster"]
    readonly_fields = ["cluster", "profile_name", "benchmark", "trigger", "schedule", "state", "reason",
                       "kubernetes_version", "distribution", "total", "passed", "failed", "warned", "not_applicable",
                       "skipped", "errored", "score", "job", "created_by", "created_at", "finished_at", "report_col"]
    fields = readonly_fields
    change_list_template = "admin/scans/scan/change_list.html"

    def has_add_permission(self, request) -> bool:
        return False  # scans start from "Run a scan", the API or a schedule

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a report is what the scan found; it is not edited

    @admin.display(description="State", ordering="state")
    def state_col(self, scan: Scan):
        return format_html('<span class="corral-badge" style="background:{}" title="{}">{}</span>',
                           STATE_COLOURS.get(scan.state, "#6c757d"), scan.reason, scan.get_state_display())

    @admin.display(description="Report")
    def report_col(self, scan: Scan):
        return format_html('<a href="{}">Open the report</a>', reverse("admin:scans_scan_report", args=[scan.pk]))

    def get_urls(self):
        own = [
            path("run/", self.admin_site.admin_view(self.run_view), name="scans_scan_run"),
            path("<int:pk>/report/", self.admin_site.admin_view(self.report_view), name="scans_scan_report"),
            path("<int:pk>/download/<str:fmt>/", self.admin_site.admin_view(self.download_view),
                 name="scans_scan_download"),
            path("<int:pk>/compare/", self.admin_site.admin_view(self.compare_view), name="scans_scan_compare"),
        ]
        return own + super().get_urls()

    def _scan(self, request, pk) -> Scan:
        return get_object_or_404(self.get_queryset(request).select_related("cluster"), pk=pk)

    def run_view(self, request):
        """Scan a cluster now: the scan runs as a job; the answer is its job page."""
        initial = {"cluster": request.GET.get("cluster")} if request.GET.get("cluster") else None
        form = RunScanForm(request.POST or None, user=request.user, initial=initial)
        if request.method == "POST" and form.is_valid():
            try:
                scan = services.request_scan(form.cleaned_data["cluster"], form.cleaned_data["profile"],
                                             user=request.user)
            except access.WriteRefused as exc:
                messages.error(request, str(exc))
            except services.ScanRefused as exc:
                messages.error(request, str(exc))
            else:
                messages.success(request, f"Scan of {scan.cluster.name} with {scan.profile_name} started.")
                return HttpResponseRedirect(reverse("admin:portal_job_change", args=[scan.job_id]))
        context = {**self.admin_site.each_context(request), "title": "Run a CIS scan", "form": form,
                   "opts": self.model._meta}
        return TemplateResponse(request, "admin/scans/scan/run.html", context)

    def report_view(self, request, pk):
        scan = self._scan(request, pk)
        rows = scan.results.all()
        chosen = {k: request.GET.get(k, "") for k in ("result", "section", "source", "q")}
        if chosen["result"]:
            rows = rows.filter(result=chosen["result"])
        if chosen["section"]:
            rows = rows.filter(section=chosen["section"])
        if chosen["source"]:
            rows = rows.filter(source=chosen["source"])
        if chosen["q"]:
            rows = rows.filter(title__icontains=chosen["q"]) | rows.filter(check_id__startswith=chosen["q"])
        others = self.get_queryset(request).filter(cluster=scan.cluster).exclude(pk=scan.pk)[:50]
        context = {
            **self.admin_site.each_context(request), "title": f"CIS scan of {scan.cluster.name}", "scan": scan,
            "opts": self.model._meta, "rows": rows, "chosen": chosen, "counts": scan.counts,
            "chart": mark_safe(reports.section_chart(scan)),  # built from numbers and escaped titles only
            "results": [(k, reports.LABELS[k]) for k in reports.RESULTS],
            "sections": [s["section"] for s in scan.sections or []], "others": others,
        }
        return TemplateResponse(request, "admin/scans/scan/report.html", context)

    def download_view(self, request, pk, fmt):
        scan = self._scan(request, pk)
        name = f"corral-scan-{scan.cluster.name}-{scan.pk}"
        if fmt == "csv":
            response = HttpResponse(reports.to_csv(scan), content_type="text/csv; charset=utf-8")
        elif fmt == "json":
            response = HttpResponse(json.dumps(reports.document(scan), indent=2), content_type="application/json")
        else:
            return HttpResponse("Download as csv or json.", status=404, content_type="text/plain")
        response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
        return response

    def compare_view(self, request, pk):
        scan = self._scan(request, pk)
        other_id = request.GET.get("with", "")
        other = self.get_queryset(request).filter(pk=int(other_id)).first() if other_id.isdigit() else None
        if other is None or other.cluster_id != scan.cluster_id:
            messages.error(request, "Choose another scan of the same cluster to compare with.")
            return HttpResponseRedirect(reverse("admin:scans_scan_report", args=[scan.pk]))
        old, new = (other, scan) if other.created_at <= scan.created_at else (scan, other)
        context = {**self.admin_site.each_context(request), "title": f"{scan.cluster.name}: scan {old.pk} → {new.pk}",
                   "opts": self.model._meta, "old": old, "new": new, "diff": reports.compare(old, new)}
        return TemplateResponse(request, "admin/scans/scan/compare.html", context)


class ScanAlertInline(admin.TabularInline):
    model = ScanAlert
    extra = 0
    fields = ["notifier", "when"]

    def has_add_permission(self, request, obj=None):
        return obj is not None and access.can_create(request.user, ScanAlert, cluster_id=obj.cluster_id)

    def has_change_permission(self, request, obj=None):
        return obj is not None and access.can(request.user, "change", obj)

    def has_delete_permission(self, request, obj=None):
        return obj is not None and access.can(request.user, "change", obj)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active if obj is None else access.can(request.user, "view", obj)

    def get_queryset(self, request):
        return access.restrict(self.model._default_manager.all(), request.user, "view")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and hasattr(field, "queryset"):
            field.queryset = access.restrict(field.queryset, request.user, "view")
        return field


@admin.register(ScanSchedule)
class ScanScheduleAdmin(PortalModelAdmin):
    list_display = ["__str__", "cluster", "profile", "cron", "keep_last", "enabled", "last_run_at", "next_run_at"]
    list_filter = ["cluster", "enabled"]
    fields = ["cluster", "profile", "cron", "keep_last", "enabled", "last_run_at", "next_run_at"]
    readonly_fields = ["last_run_at", "next_run_at"]
    inlines = [ScanAlertInline]

    def get_readonly_fields(self, request, obj=None):
        return ["cluster", *self.readonly_fields] if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        obj.next_run_at = None  # the dispatcher computes it from the (maybe new) cron line
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        original = form.clean

        def clean(this):
            data = original(this)
            cluster = data.get("cluster") or (obj.cluster if obj is not None else None)
            profile = data.get("profile")
            if cluster is not None and profile is not None:
                try:
                    services.check_profile_fits(cluster, profile)
                except services.ScanRefused as exc:
                    this.add_error("profile", str(exc))
            return data

        form.clean = clean
        return form
