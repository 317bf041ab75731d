from django.apps import AppConfig


class ScansConfig(AppConfig):
    name = "scans"
    verbose_name = "CIS scans"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from portal import jobs
        from rbac import access
        from scans import jobs as scan_jobs
        from scans.models import CheckResult, Scan, ScanAlert, ScanProfile, ScanSchedule
        from scans.profiles import sync_builtin_profiles

        # Scans, their results, schedules and alert rules belong to a cluster: "scan.*" there decides.
        access.register(Scan, access.Rule("scan", cluster_path="cluster"))
        access.register(CheckResult, access.Rule("scan", cluster_path="scan__cluster"))
        access.register(ScanSchedule, access.Rule("scan", cluster_path="cluster"))
        access.register(ScanAlert, access.Rule("scan", cluster_path="schedule__cluster"))
        # Profiles are global: every user may read them (role "user"), admins write them.
        access.register(ScanProfile, access.Rule("scanprofile"))

        jobs.register(scan_jobs.ScanRunner, scan_jobs.DispatchSchedulesRunner)
        jobs.periodic(scan_jobs.DispatchSchedulesRunner.kind, cron="* * * * *")
        post_migrate.connect(sync_builtin_profiles, sender=self)
