"""allauth adapters: SAML configuration from :class:`SSOProvider` rows, Corral's login rules.

Why an adapter and not ``SocialApp`` rows synced on save: allauth asks its social adapter
for apps (``list_apps``) every time it needs one, so answering from the SSOProvider table
keeps one source of truth, needs no sync code that could drift, and never writes the SP
private key in plain text into allauth's ``SocialApp.settings`` column.
"""
from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.providers.base.constants import AuthProcess
from django import forms
from django.db import transaction

from portal import audit
from portal.sso import config, errors
from portal.sso.backends import SAML_BACKEND, local_login_refusal
from portal.sso.models import SSOProvider


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_apps(self, request, provider=None, client_id=None):
        """Every SSOProvider as an unsaved SAML ``SocialApp``; SAML apps from allauth's own table or settings are ignored."""
        apps = [a for a in super().list_apps(request, provider=provider, client_id=client_id) if a.provider != config.SAML]
        rows = SSOProvider.objects.all()
        if provider and provider != config.SAML:
            rows = rows.filter(slug=provider)  # allauth looks SAML accounts up by the app's provider_id (our slug)
        if client_id:
            rows = rows.filter(slug=client_id)
        if provider in (None, config.SAML) or rows:
            apps.extend(config.social_app(row) for row in rows)
        return apps

    def list_providers(self, request):
        """The login page offers only providers that can be used now."""
        return [
            p for p in super().list_providers(request)
            if p.id != config.SAML or not p.sso.login_unavailable_reason()
        ]

    def is_open_for_signup(self, request, sociallogin) -> bool:
        # Users of an enabled IdP are created by portal.sso.services, whatever the local sign-up policy.
        return True

    def pre_social_login(self, request, sociallogin) -> None:
        """After python3-saml and Corral accepted the response: create/update the user and sync IdP groups."""
        assertion = getattr(sociallogin, "corral_assertion", None)
        if assertion is None:
            return
        if sociallogin.state.get("process", AuthProcess.LOGIN) != AuthProcess.LOGIN:
            raise errors.SAMLRefused(
                "unsupported", "Single sign-on identities are not linked to existing accounts here: "
                "sign out, then sign in with single sign-on.", assertion.provider,
            )
        from portal.sso.services import sync_saml_login

        user, account, _ = sync_saml_login(assertion, source_ip=audit.client_ip(request))
        user.backend = SAML_BACKEND  # the login audit row then says "via SAMLBackend"
        sociallogin.user, sociallogin.account = user, account

    def validate_disconnect(self, account, accounts) -> None:
        """An IdP identity is how its user signs in and gets their groups; only an administrator removes it."""
        if account.provider in set(SSOProvider.objects.values_list("slug", flat=True)):
            raise forms.ValidationError("Single sign-on identities cannot be disconnected; ask a Corral administrator.")
        super().validate_disconnect(account, accounts)

    def on_authentication_error(self, request, provider, error=None, exception=None, extra_context=None) -> None:
        """Explain the refusal in words on the error page and write a failed-login audit row."""
        super().on_authentication_error(request, provider, error=error, exception=exception, extra_context=extra_context)
        if extra_context is None or getattr(provider, "id", None) != config.SAML:
            return
        if "corral_refusal" not in extra_context:
            code, sentence = errors.explain(extra_context.get("saml_last_error_reason"))
            extra_context["corral_refusal"] = {"code": code, "reason": sentence,
                                               "detail": extra_context.get("saml_last_error_reason") or ""}
        if error == "cancelled":
            return
        record_refusal(request, getattr(provider, "sso", None), extra_context["corral_refusal"])


def record_refusal(request, sso: SSOProvider | None, refusal: dict) -> None:
    """The failed-login audit row for a refused SAML request (``sso`` is None when the URL names no provider)."""
    where = "" if sso is not None else f" at {request.path[:200]!r}"
    message = (f"SAML sign-in via {getattr(sso, 'name', 'an unknown provider')}{where} refused "
               f"({refusal['code']}): {refusal['reason']}" + (f" [{refusal['detail']}]" if refusal.get("detail") else ""))
    # Parts of the message come from the request: no NUL or control characters reach the database.
    message = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message)
    with transaction.atomic():
        audit.record("login_failed", sso, source_ip=audit.client_ip(request), message=message)


class AccountAdapter(DefaultAccountAdapter):

    def is_safe_url(self, url: str | None) -> bool:
        """allauth's check, but an unparseable URL (``next=http://[::1``) is unsafe instead of a ValueError (500)."""
        try:
            return super().is_safe_url(url)
        except ValueError:
            return False

    def is_open_for_signup(self, request) -> bool:
        """Corral users come from an administrator or an identity provider; nobody signs themselves up."""
        return False

    def authentication_failed(self, request, **credentials) -> None:
        """Say why, when the failure is LocalLoginGate's (which already had the attempt audited via user_login_failed)."""
        super().authentication_failed(request, **credentials)
        if credentials.get("password") is not None:
            refusal = local_login_refusal(credentials.get("username"))
            if refusal:
                raise forms.ValidationError(refusal)
