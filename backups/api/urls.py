from backups.api.views import BackupTargetViewSet, RestoreViewSet, SnapshotViewSet


def register(router) -> None:
    router.register("backuptargets", BackupTargetViewSet, basename="backuptarget")
    router.register("snapshots", SnapshotViewSet, basename="snapshot")
    router.register("restores", RestoreViewSet, basename="restore")
