"""Jobs and API tokens in admin. Every app's admin classes extend PortalModelAdmin."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from portal import jobs
from portal.admin_base import PortalModelAdmin, ReadOnlyAdminMixin
from portal.jobs.control import JobStateError, is_resumable
from portal.models import ApiToken, AuditEvent, Job, JobLogLine
from rbac import access

STATUS_COLOURS = {
    "queued": "#6c757d", "running": "#0d6efd", "succeeded": "#198754", "failed": "#dc3545",
    "cancelled": "#adb5bd", "paused": "#fd7e14",
}


def status_badge(status: str, label: str):
    return format_html(
        '<span class="corral-badge" style="background:{}">{}</span>', STATUS_COLOURS.get(status, "#6c757d"), label
    )


def progress_bar(percent: int):
    return format_html(
        '<div class="corral-progress" title="{}%"><div style="width:{}%"></div></div>', percent, percent
    )


@admin.register(Job)
class JobAdmin(PortalModelAdmin):
    list_display = ["kind", "target_repr", "status_col", "progress_col", "progress_message", "created_by",
                    "created_at", "duration_col"]
    list_filter = ["status", "kind", "queue", "cluster"]
    search_fields = ["kind", "target_repr", "progress_message", "id"]
    date_hierarchy = "created_at"
    list_select_related = ["created_by"]
    readonly_fields = [
        "id", "kind", "queue", "status", "progress", "progress_message", "params", "result", "error",
        "target_type", "target_id", "target_repr", "cluster", "created_by", "created_at", "started_at",
        "finished_at", "heartbeat_at", "worker", "attempts", "cancel_requested",
    ]
    fieldsets = [
        # Status and progress are shown once, live, above the fields (templates/admin/portal/job/change_form.html).
        (None, {"fields": ["kind", "target_repr", "cluster", "error", "result"]}),
        ("Details", {"classes": ["collapse"], "fields": [
            "id", "queue", "params", "target_type", "target_id", "created_by", "created_at", "started_at",
            "finished_at", "heartbeat_at", "worker", "attempts", "cancel_requested"]}),
    ]
    actions = ["cancel_selected"]

    @admin.display(description="Status", ordering="status")
    def status_col(self, job: Job):
        return status_badge(job.status, job.get_status_display())

    @admin.display(description="Progress", ordering="progress")
    def progress_col(self, job: Job):
        return progress_bar(job.progress)

    @admin.display(description="Duration")
    def duration_col(self, job: Job):
        d = job.duration
        return f"{int(d.total_seconds())} s" if d is not None else "—"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        urls = super().get_urls()
        own = [
            path("<uuid:pk>/cancel/", self.admin_site.admin_view(self.cancel_view), name="portal_job_cancel"),
            path("<uuid:pk>/resume/", self.admin_site.admin_view(self.resume_view), name="portal_job_resume"),
        ]
        return own + urls

    def _control(self, request, pk, operation, verb: str):
        job = get_object_or_404(self.get_queryset(request), pk=pk)
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:portal_job_change", args=[pk]))
        try:
            operation(job, user=request.user)
            messages.success(request, f"Job {verb} requested.")
        except access.WriteRefused:
            messages.error(request, f"You may not {verb} this job.")
        except JobStateError as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("admin:portal_job_change", args=[pk]))

    def cancel_view(self, request, pk):
        return self._control(request, pk, jobs.request_cancel, "cancel")

    def resume_view(self, request, pk):
        return self._control(request, pk, jobs.request_resume, "resume")

    @admin.action(description="Cancel selected jobs")
    def cancel_selected(self, request, queryset):
        done = 0
        for job in access.restrict(queryset, request.user, "cancel"):
            try:
                jobs.request_cancel(job, user=request.user)
                done += 1
            except JobStateError:
                pass
        self.message_user(request, f"Cancellation requested for {done} job(s).")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        context = {"job": job, **(extra_context or {})}
        if job is not None:
            context.update(
                can_cancel=not job.is_finished and access.can(request.user, "cancel", job),
                can_resume=is_resumable(job) and access.can(request.user, "resume", job),
                log_lines=JobLogLine.objects.filter(job=job).order_by("id")[:2000],
                status_colours=STATUS_COLOURS,
            )
        return super().change_view(request, object_id, form_url, extra_context=context)


@admin.register(ApiToken)
class ApiTokenAdmin(PortalModelAdmin):
    list_display = ["user", "description", "hint_col", "created_at", "expires_at", "last_used_at"]
    search_fields = ["user__username", "description"]
    fields = ["user", "description", "expires_at"]

    @admin.display(description="Token")
    def hint_col(self, token: ApiToken) -> str:
        return f"corral_••••{token.hint}"

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if access.grants_for(request.user).is_admin() else qs.filter(user=request.user)

    def get_readonly_fields(self, request, obj=None):
        return ["user", "description", "expires_at"] if obj else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "user" and not access.grants_for(request.user).is_admin():
            field.queryset = field.queryset.filter(pk=request.user.pk)  # tokens are minted for oneself
            field.initial = request.user.pk
        return field

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        self.check_write(request, "add", obj)
        token, raw = ApiToken.issue(obj.user, description=obj.description, expires_at=obj.expires_at)
        obj.pk = token.pk
        messages.warning(request, f"Copy this token now; it will not be shown again: {raw}")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, PortalModelAdmin):
    list_display = ["at", "username", "action", "object_type", "object_repr", "cluster", "source_ip"]
    list_filter = ["action", "object_type", "cluster"]
    search_fields = ["username", "object_repr", "message", "object_id"]
    date_hierarchy = "at"


class AdminOnlyMixin:
    """For third-party admin pages (accounts, RQ dashboard): only Corral admins may open them."""

    def _is_admin(self, request) -> bool:
        return access.grants_for(request.user).is_admin()

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs if self._is_admin(request) else qs.none()

    def has_module_permission(self, request) -> bool:
        return self._is_admin(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._is_admin(request)

    def has_add_permission(self, request, *args) -> bool:
        return self._is_admin(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._is_admin(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._is_admin(request)


def _guard_third_party_admin() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.admin import UserAdmin
    from django.contrib.auth.models import Group as DjangoGroup

    site = admin.site
    if site.is_registered(DjangoGroup):
        site.unregister(DjangoGroup)  # Corral's groups live in rbac
    User = get_user_model()
    if site.is_registered(User):
        site.unregister(User)

    @admin.register(User)
    class CorralUserAdmin(UserAdmin, PortalModelAdmin):
        list_display = ["username", "email", "first_name", "last_name", "is_active", "is_superuser", "last_login"]
        list_filter = ["is_active", "is_superuser"]
        filter_horizontal = []
        fieldsets = [
            (None, {"fields": ["username", "password"]}),
            ("Personal info", {"fields": ["first_name", "last_name", "email"]}),
            ("Status", {"fields": ["is_active", "is_superuser", "last_login", "date_joined"]}),
        ]
        readonly_fields = ["last_login", "date_joined"]

        def user_change_password(self, request, id, form_url=""):
            """Setting someone's password takes their power: the same write rule as any change of them."""
            target = self.get_object(request, id)
            if target is not None and request.method == "POST":
                access.check_write(request.user, "change", target, before=target)
            return super().user_change_password(request, id, form_url)

    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, PortalModelAdmin) or model._meta.app_label in ("portal", "rbac"):
            continue
        site.unregister(model)
        site.register(model, type(f"Guarded{type(model_admin).__name__}", (AdminOnlyMixin, type(model_admin)), {}))


_guard_third_party_admin()
