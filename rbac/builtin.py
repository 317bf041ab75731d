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


def bind_default_role(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """New users get the global role named by CORRAL_DEFAULT_GLOBAL_ROLE ("user" unless set otherwise)."""
    from django.conf import settings

    from rbac.models import GlobalRole, GlobalRoleBinding

    name = getattr(settings, "DEFAULT_GLOBAL_ROLE", "user")
    if not created or raw or not name:
        return
    role = GlobalRole.objects.filter(name=name).first()
    if role is not None:
        GlobalRoleBinding.objects.get_or_create(role=role, user=instance)
