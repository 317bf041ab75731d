from django.urls import path

from scans.api.views import (
    ClusterScanView,
    ScanAlertViewSet,
    ScanProfileViewSet,
    ScanScheduleViewSet,
    ScanViewSet,
)


def register(router) -> None:
    router.register("scan-profiles", ScanProfileViewSet, basename="scanprofile")
    router.register("scans", ScanViewSet, basename="scan")
    router.register("scan-schedules", ScanScheduleViewSet, basename="scanschedule")
    router.register("scan-alerts", ScanAlertViewSet, basename="scanalert")


urlpatterns = [path("clusters/<int:pk>/scan/", ClusterScanView.as_view(), name="cluster-scan")]
