"""Granting and revoking roles: the one place admin, API and SSO change who may do what."""
from __future__ import annotations

from django.db import transaction

from portal import audit
from rbac import access
from rbac.models import Group


@transaction.atomic
def set_group_members(group: Group, users, *, acting_user=None, action: str = "change") -> tuple[set[int], set[int]]:
    """Replace a group's members; returns (added ids, removed ids) and writes one audit row.

    Adding a member hands them the group's roles, so the acting user must hold them all.
    """
    users = list(users)
    access.check_write(acting_user, action, group, related={"members": users})
    new = {u.pk for u in users}
    old = set(group.members.values_list("pk", flat=True))
    added, removed = new - old, old - new
    if added:
        group.members.add(*added)
    if removed:
        group.members.remove(*removed)
    if added or removed:
        audit.record("role_change", group, user=acting_user,
                     changes={"members": [sorted(old), sorted(new)]},
                     message=f"members of group {group}: +{len(added)} -{len(removed)}")
    return added, removed
