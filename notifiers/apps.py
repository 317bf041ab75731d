from django.apps import AppConfig


class NotifiersConfig(AppConfig):
    name = "notifiers"
    verbose_name = "Notifiers"

    def ready(self) -> None:
        from notifiers.models import Notifier
        from rbac import access

        # Global, like catalogs and profiles: "notifier.*" (admins, restricted admins) decides.
        access.register(Notifier, access.Rule("notifier"))
