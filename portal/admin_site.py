"""The Corral admin: every active user may sign in; each page shows only what they may see."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Count

from rbac import access


class LoginForm(AuthenticationForm):
    """Any active user may sign in; what they then see is up to the permission layer."""


class CorralAdminSite(admin.AdminSite):
    login_form = LoginForm
    site_header = "Corral"
    site_title = "Corral"
    index_title = "Fleet overview"
    index_template = "admin/corral_index.html"

    def has_permission(self, request) -> bool:
        # Access is decided per page by the permission layer, not by Django's is_staff flag.
        return bool(request.user.is_active and request.user.is_authenticated)

    def index(self, request, extra_context=None):
        from clusters.models import Cluster
        from portal.models import Job

        access.forget(request.user)
        clusters = access.restrict(Cluster.objects.all(), request.user, "view")
        jobs = access.restrict(Job.objects.all(), request.user, "view")
        by_state = dict(clusters.values_list("state").annotate(n=Count("pk")).order_by())
        by_status = dict(jobs.values_list("status").annotate(n=Count("pk")).order_by())
        counts = [
            ("Clusters", clusters.count(), "admin:clusters_cluster_changelist"),
            ("Active clusters", by_state.get(Cluster.State.ACTIVE, 0), None),
            ("Unavailable clusters", by_state.get(Cluster.State.UNAVAILABLE, 0), None),
            ("Jobs running", by_status.get(Job.Status.RUNNING, 0), None),
            ("Jobs queued", by_status.get(Job.Status.QUEUED, 0), None),
            ("Jobs failed", by_status.get(Job.Status.FAILED, 0), None),
        ]
        context = {
            "corral_counts": counts,
            "recent_jobs": jobs.select_related("created_by")[:10],
            **(extra_context or {}),
        }
        return super().index(request, extra_context=context)
