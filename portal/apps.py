from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Corral"

    def ready(self) -> None:
        from portal import jobs
        from portal.maintenance import DiagnoseRunner, PruneJobsRunner

        jobs.register(DiagnoseRunner, PruneJobsRunner)
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from portal.signals import audit_login, audit_login_failed

        user_logged_in.connect(audit_login, dispatch_uid="corral_audit_login")
        user_login_failed.connect(audit_login_failed, dispatch_uid="corral_audit_login_failed")
        jobs.periodic(PruneJobsRunner.kind, cron="17 3 * * *")


class CorralAdminConfig(AdminConfig):
    default_site = "portal.admin_site.CorralAdminSite"
