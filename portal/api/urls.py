"""``/v3/``: every app adds its viewsets to this one router."""
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import APIRootView, DefaultRouter

from portal.api.auditlog import AuditEventViewSet
from portal.api.jobs import JobViewSet
from portal.api.tokens import ApiTokenViewSet


class RootView(APIRootView):
    """Lists the endpoints to any signed-in user; each endpoint then shows only what they may see."""

    public_to_users = True


class Router(DefaultRouter):
    APIRootView = RootView


router = Router()
router.register("jobs", JobViewSet, basename="job")
router.register("tokens", ApiTokenViewSet, basename="apitoken")
router.register("auditlog", AuditEventViewSet, basename="auditevent")

app_name = "api"


def register_app_routes() -> None:
    """Each app's ``api/urls.py`` exposes ``register(router)``; collected once here."""
    from importlib import import_module

    for app in ("rbac", "clusters", "backups", "scans", "notifiers", "catalog", "portal.sso"):
        try:
            module = import_module(f"{app}.api.urls")
        except ModuleNotFoundError as exc:
            if exc.name != f"{app}.api.urls" and exc.name != f"{app}.api":
                raise
            continue
        module.register(router)
        app_paths.extend(getattr(module, "urlpatterns", []))


#: Routes an app adds outside the router (an operation on another app's object, e.g. POST clusters/{id}/scan/).
app_paths: list = []
register_app_routes()

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    *app_paths,
    path("", include(router.urls)),
]
