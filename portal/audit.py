"""The audit log: ``record()`` from services, and automatic rows for API and admin writes.

The acting user and source address come from the current request (set by
:class:`AuditMiddleware` and the API base), so services need not pass them along.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.db import models

from portal.crypto import EncryptedTextField, mask

SECRET_MARK = "(secret changed)"


@dataclass
class Actor:
    user: Any = None
    source_ip: str | None = None


_actor: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("corral_audit_actor", default=None)


def client_ip(request) -> str | None:
    """The peer address; X-Forwarded-For only counts behind a proxy that the deployment trusts."""
    from django.conf import settings

    if getattr(settings, "TRUST_X_FORWARDED_FOR", False):
        forwarded = _address(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[0])
        if forwarded:
            return forwarded
    return _address(request.META.get("REMOTE_ADDR") or "")


def _address(text: str) -> str | None:
    """An IP address as the audit column stores it, or None: a forged header must not break the audit write."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def set_actor(user=None, source_ip: str | None = None) -> contextvars.Token:
    return _actor.set(Actor(user=user, source_ip=source_ip))


def current_actor() -> Actor:
    return _actor.get() or Actor()


class AuditMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = set_actor(getattr(request, "user", None), client_ip(request))
        try:
            return self.get_response(request)
        finally:
            _actor.reset(token)


def _cluster_of(obj) -> Any:
    from clusters.models import Cluster

    if isinstance(obj, Cluster):
        return obj if obj.pk else None
    cluster = getattr(obj, "cluster", None)
    if isinstance(cluster, Cluster):
        return cluster
    project = getattr(obj, "project", None)
    return getattr(project, "cluster", None)


def snapshot(obj: models.Model) -> dict[str, Any]:
    """Field values worth comparing; secrets become a digest-free marker so they never reach the log."""
    values: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        if getattr(field, "auto_now", False):
            continue  # bookkeeping timestamps would show on every change
        value = getattr(obj, field.attname, None)
        if isinstance(field, EncryptedTextField):
            values[field.name] = ("secret", hash(value)) if value else ""
        elif isinstance(value, (str, int, float, bool, type(None), list, dict)):
            values[field.name] = value
        else:
            values[field.name] = str(value)
    return values


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list]:
    before, after = before or {}, after or {}
    changes: dict[str, list] = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if isinstance(old, tuple) or isinstance(new, tuple):
            changes[name] = [mask("x" * 16) if old else "", SECRET_MARK if new else ""]
        else:
            changes[name] = [old, new]
    return changes


def record(
    action: str,
    obj: models.Model | None = None,
    *,
    user=None,
    source_ip: str | None = None,
    changes: dict | None = None,
    message: str = "",
    cluster=None,
) -> Any:
    """Write one audit row. Call it inside the transaction of the change it describes."""
    from portal.models import AuditEvent

    actor = current_actor()
    user = user if user is not None else actor.user
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    event = AuditEvent(
        user=user,
        username=getattr(user, "get_username", lambda: "")() if user else "",
        action=action,
        source_ip=source_ip or actor.source_ip,
        changes=changes or {},
        message=message,
        cluster=cluster if cluster is not None else (_cluster_of(obj) if obj is not None else None),
    )
    if obj is not None:
        event.object_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
        event.object_id = str(obj.pk)
        event.object_repr = str(obj)[:200]
    event.save()
    return event
