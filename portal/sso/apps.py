from django.apps import AppConfig


class SSOConfig(AppConfig):
    """Code for SAML single sign-on. Its models belong to the ``portal`` app (``Meta.app_label``);
    this config exists so the admin, template tags, management command and access rules are
    registered in ``ready()``, not by import side effects."""

    name = "portal.sso"
    label = "corral_sso"
    verbose_name = "Single sign-on"

    def ready(self) -> None:
        from portal.sso.models import SAMLMessageID, SSOProvider, SSOSettings
        from rbac import access

        # Global-only: no cluster or project path, so only admins and global roles with ssoprovider.* reach them.
        access.register(SSOProvider, access.Rule("ssoprovider"))
        access.register(SSOSettings, access.Rule("ssoprovider"))
        access.register(SAMLMessageID, access.Rule("ssoprovider"))
