from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"

    def ready(self) -> None:
        from django.conf import settings

        from backups.jobs import RUNNERS, RecurringRunner
        from backups.models import BackupTarget, Restore, Snapshot
        from portal import jobs
        from rbac import access

        # Snapshots and restores are seen by whoever may see the cluster's snapshots; a target of one
        # cluster is that cluster's, a target with no cluster is the fleet's (global roles only).
        access.register(Snapshot, access.Rule("snapshot", cluster_path="cluster"))
        access.register(Restore, access.Rule("snapshot", cluster_path="cluster"))
        access.register(BackupTarget, access.Rule("backuptarget", cluster_path="cluster"))
        jobs.register(*RUNNERS)
        jobs.periodic(RecurringRunner.kind, every=settings.BACKUP_SCHEDULE_SECONDS)
