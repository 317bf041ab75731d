from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Corral"

    def ready(self) -> None:
        from portal import jobs
        from portal.maintenance import DiagnoseRunner, PruneJobsRunner

        jobs.register(DiagnoseRunner, PruneJobsRunner)
        jobs.periodic(PruneJobsRunner.kind, cron="17 3 * * *")


class CorralAdminConfig(AdminConfig):
    default_site = "portal.admin_site.CorralAdminSite"
