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


def local_login_allowed(username: str | None) -> bool:
    """May ``username`` sign in with a password right now?

    Yes while local login is on. When it is off, only an active superuser, and only while
    the server runs with ``CORRAL_LOCAL_LOGIN_BREAK_GLASS=1`` (break-glass for a broken IdP).
    """
    if local_login_enabled():
        return True
    if not break_glass_active() or not username:
        return False
    return get_user_model()._default_manager.filter(username=username, is_superuser=True, is_active=True).exists()


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
