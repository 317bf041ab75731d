"""Authentication backends: the local-login switch, and the backend SAML sessions are recorded under."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

SAML_BACKEND = "portal.sso.backends.SAMLBackend"


def break_glass_active() -> bool:
    return bool(getattr(settings, "CORRAL_LOCAL_LOGIN_BREAK_GLASS", False))


def local_login_enabled() -> bool:
    from portal.sso.models import SSOSettings

    row = SSOSettings.objects.filter(pk=1).values_list("local_login_enabled", flat=True).first()
    return True if row is None else row


LOCAL_LOGIN_OFF = "Password sign-in is turned off for Corral. Sign in with your organisation's single sign-on below."
SSO_USER = "This account signs in with single sign-on, so that its groups stay current. Use the single sign-on button below."


def _has_sso_identity(username: str) -> bool:
    from allauth.socialaccount.models import SocialAccount

    from portal.sso.models import SSOProvider

    return SocialAccount.objects.filter(
        user__username=username, provider__in=SSOProvider.objects.values("slug")
    ).exists()


def local_login_refusal(username: str | None) -> str:
    """Why ``username`` may not sign in with a password right now, or ``""`` if they may.

    Users who came from an identity provider always sign in through it (a password would
    keep their IdP groups from being refreshed). Everyone else may while local login is on.
    When it is off — or for an SSO user — only an active superuser may, and only while the
    server runs with ``CORRAL_LOCAL_LOGIN_BREAK_GLASS=1`` (break-glass for a broken IdP).
    """
    enabled = local_login_enabled()
    sso_user = bool(username) and _has_sso_identity(username)
    if enabled and not sso_user:
        return ""
    if break_glass_active() and username and get_user_model()._default_manager.filter(
        username=username, is_superuser=True, is_active=True
    ).exists():
        return ""
    return SSO_USER if enabled else LOCAL_LOGIN_OFF


def local_login_allowed(username: str | None) -> bool:
    return not local_login_refusal(username)


class LocalLoginGate:
    """First in ``AUTHENTICATION_BACKENDS``: stops every password check when local login is off.

    Raising ``PermissionDenied`` makes Django skip the remaining backends (ModelBackend and
    allauth's) and send ``user_login_failed``, so the refusal is audited like any failed login.
    Deliberately not a ``BaseBackend``: without ``get_user`` it is never chosen as the backend
    a session is recorded under (``login()``, ``Client.force_login()``), and it grants no permissions.
    """

    def authenticate(self, request, password=None, **credentials):
        if password is None:
            return None
        if local_login_allowed(credentials.get("username")):
            return None
        raise PermissionDenied("local password login is turned off")


class SAMLBackend(ModelBackend):
    """Never authenticates by itself; SAML sessions are recorded under it so logs and audit rows say "via SAMLBackend"."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        return None
