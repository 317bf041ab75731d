from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from portal import health

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("", include("portal.sso.urls")),  # SSO routes that take precedence over admin's and allauth's
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("v3/", include("portal.api.urls", namespace="api")),
]
