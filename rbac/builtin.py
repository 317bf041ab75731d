"""Keeps the built-in roles present and up to date after every migrate."""
from __future__ import annotations

from rbac.permissions import BUILTIN_GLOBAL_ROLES, BUILTIN_ROLE_TEMPLATES


def sync_builtin_roles(**kwargs) -> None:
    from rbac.models import GlobalRole, RoleTemplate

    for name, (description, perms) in BUILTIN_GLOBAL_ROLES.items():
        GlobalRole.objects.update_or_create(
            name=name, defaults={"description": description, "permissions": perms, "builtin": True}
        )
    for name, (context, description, perms) in BUILTIN_ROLE_TEMPLATES.items():
        RoleTemplate.objects.update_or_create(
            name=name, defaults={"context": context, "description": description, "permissions": perms, "builtin": True}
        )
