"""DRF's default permission: authenticated users only, then the permission layer decides."""
from __future__ import annotations

from rest_framework.permissions import BasePermission

from rbac import access

METHOD_ACTIONS = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "POST": "add", "PUT": "change",
                  "PATCH": "change", "DELETE": "delete"}


def required_action(request, view) -> str:
    """The permission-layer action a request needs: an @action may name one, else the HTTP verb decides."""
    extra = getattr(view, "action_permissions", {}) or {}
    name = getattr(view, "action", None)
    if name in extra:
        return extra[name]
    return METHOD_ACTIONS.get(request.method, "change")


class PortalPermission(BasePermission):
    message = "You do not have permission to perform this action."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False
        if getattr(view, "public_to_users", False):
            return True
        if not hasattr(view, "get_queryset"):
            return False
        if getattr(view, "action", None) == "create":
            # Refused before the body is even validated: a kubeconfig import must not contact anything first.
            return access.may_add_somewhere(user, view.get_queryset().model)
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        return access.can(request.user, required_action(request, view), obj)
