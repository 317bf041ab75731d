"""Admin pages for SSO: identity providers (with test / refresh / new key), and the global login switch."""
from __future__ import annotations

from allauth.socialaccount.models import SocialApp
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from portal.admin_base import PortalModelAdmin
from portal.sso import checks, config, keys, services
from portal.sso.forms import SSOProviderForm
from portal.sso.models import SSOProvider, SSOSettings
from rbac import access

LEVELS = {"error": messages.ERROR, "warning": messages.WARNING, "ok": messages.SUCCESS}

# SAML is configured in SSO providers; allauth's own app table would be a second, ignored place to do it.
if admin.site.is_registered(SocialApp):
    admin.site.unregister(SocialApp)


def _validation_text(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return " ".join(m for msgs in exc.message_dict.values() for m in msgs)
    return " ".join(exc.messages)


@admin.register(SSOProvider)
class SSOProviderAdmin(PortalModelAdmin):
    form = SSOProviderForm
    change_form_template = "admin/sso/ssoprovider_change_form.html"
    list_display = ["name", "slug", "enabled", "idp_entity_id", "metadata_status", "sp_metadata_link"]
    list_filter = ["enabled"]
    search_fields = ["name", "slug", "idp_entity_id", "sp_entity_id"]
    actions = ["test_configuration", "refresh_metadata", "generate_sp_key"]
    readonly_fields = [
        "idp_summary", "idp_metadata_fetched_at", "sp_certificate_summary", "created_at", "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["name", "slug", "enabled"]}),
        ("Identity provider", {"fields": [
            "idp_metadata_url", "idp_metadata_xml", "idp_entity_id", "idp_metadata_signing_cert", "idp_summary",
            "idp_metadata_fetched_at"]}),
        ("Corral as service provider", {
            "description": "Register Corral's SP metadata (URL at the top of this page) at the identity provider.",
            "fields": ["sp_entity_id", "sp_certificate", "sp_private_key", "sp_certificate_summary"]}),
        ("Attribute map", {"fields": [
            "attr_uid", "uid_from_nameid", "attr_display_name", "attr_first_name", "attr_last_name", "attr_email",
            "attr_groups", "enforce_scope"]}),
        ("Signing and encryption", {"classes": ["collapse"], "fields": [
            "sign_authn_requests", "want_assertions_signed", "want_responses_signed", "want_assertions_encrypted",
            "signature_algorithm", "digest_algorithm", "name_id_format", "allow_idp_initiated"]}),
        ("History", {"classes": ["collapse"], "fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return fields + ["slug"] if obj is not None else fields

    # --- display --------------------------------------------------------------------------------------------------

    @admin.display(description="Metadata")
    def metadata_status(self, obj: SSOProvider) -> str:
        if not obj.has_metadata:
            return "missing"
        return f"fetched {obj.idp_metadata_fetched_at:%Y-%m-%d}" if obj.idp_metadata_fetched_at else "pasted"

    @admin.display(description="SP metadata")
    def sp_metadata_link(self, obj: SSOProvider):
        return format_html('<a href="{}">metadata</a>', reverse("saml_metadata", args=[obj.slug]))

    @admin.display(description="From the metadata")
    def idp_summary(self, obj: SSOProvider):
        if obj is None or not obj.has_metadata:
            return "No metadata read yet."
        rows = [("Sign-in URL", obj.idp_sso_url), ("Logout URL", obj.idp_slo_url or "—")]
        for n, cert in enumerate(obj.idp_signing_certs, 1):
            try:
                rows.append((f"Signing certificate {n}", keys.cert_info(cert).describe()))
            except ValueError as exc:
                rows.append((f"Signing certificate {n}", str(exc)))
        rows.append(("Scopes", ", ".join(s["value"] + (" (regexp)" if s.get("regexp") else "") for s in obj.idp_scopes) or "—"))
        rows.append(("Valid until", f"{obj.idp_metadata_valid_until:%Y-%m-%d %H:%M} UTC" if obj.idp_metadata_valid_until else "—"))
        return format_html("<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows))

    @admin.display(description="SP certificate")
    def sp_certificate_summary(self, obj: SSOProvider) -> str:
        if obj is None or not obj.sp_certificate:
            return "Generated when the provider is saved."
        try:
            return keys.cert_info(obj.sp_certificate).describe()
        except ValueError as exc:
            return str(exc)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        provider = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if provider is not None:
            # Built with the host name this page is reached by, like the URLs allauth serves.
            context["sso_urls"] = [
                ("SP entity id", config.sp_entity_id(provider, request)),
                ("SP metadata (register this at the IdP)", config.metadata_url(provider, request)),
                ("Assertion consumer service (ACS)", config.acs_url(provider, request)),
                ("Login URL", config.login_url(provider, request)),
            ]
            context["sso_provider"] = provider
            context["can_change_provider"] = access.can(request.user, "change", provider)
        return super().change_view(request, object_id, form_url, extra_context=context)

    # --- actions --------------------------------------------------------------------------------------------------

    def _report(self, request, provider: SSOProvider) -> None:
        report = checks.check_provider(provider, request)
        verdict = "passed" if report.passed else "FAILED"
        self.message_user(request, f"Test of {provider.name}: {verdict}.", messages.SUCCESS if report.passed else messages.ERROR)
        for finding in report:
            self.message_user(request, f"{provider.name}: {finding.text}", LEVELS[finding.level])

    @admin.action(description="Test this configuration")
    def test_configuration(self, request, queryset):
        for provider in access.restrict(queryset, request.user, "view"):
            self._report(request, provider)

    @admin.action(description="Refresh metadata from its URL")
    def refresh_metadata(self, request, queryset):
        for provider in access.restrict(queryset, request.user, "change"):
            try:
                services.refresh_metadata(provider, user=request.user)
                self.message_user(request, f"{provider.name}: metadata refreshed from {provider.idp_metadata_url}.")
            except ValidationError as exc:
                self.message_user(request, f"{provider.name}: {_validation_text(exc)}", messages.ERROR)

    @admin.action(description="Generate a new SP key and certificate")
    def generate_sp_key(self, request, queryset):
        for provider in access.restrict(queryset, request.user, "change"):
            services.generate_sp_key(provider, user=request.user)
            self.message_user(
                request,
                f"{provider.name}: new SP key and certificate generated. Load Corral's SP metadata into the IdP again, "
                "or it will not be able to encrypt for Corral or check its requests.",
                messages.WARNING,
            )

    def get_urls(self):
        own = [
            path("<int:pk>/test/", self.admin_site.admin_view(self.test_view), name="portal_ssoprovider_test"),
            path("<int:pk>/refresh/", self.admin_site.admin_view(self.refresh_view), name="portal_ssoprovider_refresh"),
            path("<int:pk>/generate-key/", self.admin_site.admin_view(self.generate_key_view),
                 name="portal_ssoprovider_generate_key"),
        ]
        return own + super().get_urls()

    def _object_action(self, request, pk, action: str, method):
        provider = get_object_or_404(self.get_queryset(request), pk=pk)
        back = HttpResponseRedirect(reverse("admin:portal_ssoprovider_change", args=[pk]))
        if action != "view" and request.method != "POST":
            return back
        if not access.can(request.user, action, provider):
            self.message_user(request, f"You may not {action} this SSO provider.", messages.ERROR)
            return back
        method(request, SSOProvider.objects.filter(pk=pk))
        return back

    def test_view(self, request, pk):
        return self._object_action(request, pk, "view", self.test_configuration)

    def refresh_view(self, request, pk):
        return self._object_action(request, pk, "change", self.refresh_metadata)

    def generate_key_view(self, request, pk):
        return self._object_action(request, pk, "change", self.generate_sp_key)


@admin.register(SSOSettings)
class SSOSettingsAdmin(PortalModelAdmin):
    """One row; the list page goes straight to it."""

    fields = ["local_login_enabled", "break_glass", "updated_at"]
    readonly_fields = ["break_glass", "updated_at"]

    @admin.display(description="Break-glass")
    def break_glass(self, obj) -> str:
        return (
            "When local login is off and SSO is broken, an operator can run “manage.py local_login on” on the server, "
            "or restart Corral with CORRAL_LOCAL_LOGIN_BREAK_GLASS=1 so that superusers (only) can sign in with a password."
        )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        if not access.grants_for(request.user).global_allows("ssoprovider.view"):
            return super().changelist_view(request, extra_context)  # an empty list: nothing to see here
        settings = SSOSettings.load()
        return HttpResponseRedirect(reverse("admin:portal_ssosettings_change", args=[settings.pk]))

    def save_model(self, request, obj, form, change):
        if "local_login_enabled" in form.changed_data and not obj.local_login_enabled and not SSOProvider.objects.filter(
            enabled=True
        ).exists():
            self.message_user(request, "No SSO provider is enabled: only break-glass can sign anyone in now.", messages.WARNING)
        super().save_model(request, obj, form, change)
