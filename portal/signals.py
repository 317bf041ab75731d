"""Logins and failed logins go to the audit log, whichever backend (password, SAML) handled them."""
from __future__ import annotations

from django.db import transaction

from portal import audit


def audit_login(sender, request, user, **kwargs) -> None:
    ip = audit.client_ip(request) if request is not None else None
    backend = getattr(user, "backend", "") or ""
    with transaction.atomic():
        audit.record("login", user, user=user, source_ip=ip, message=f"via {backend.rsplit('.', 1)[-1] or 'session'}")


def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    ip = audit.client_ip(request) if request is not None else None
    username = str(credentials.get("username") or credentials.get("email") or "")[:150]
    with transaction.atomic():
        audit.record("login_failed", source_ip=ip, message=f"failed login for {username!r}")
