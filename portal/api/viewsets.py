"""The base every API viewset uses, so no endpoint can skip the permission layer or the audit log."""
from __future__ import annotations

from django.db import transaction
from rest_framework import exceptions, mixins, viewsets

from portal import audit
from portal.api.permissions import required_action
from rbac import access


class PortalViewSetMixin:
    """Lists only what the caller may view; writes are re-checked and audited inside their transaction.

    Objects the caller may not view answer 404, objects they may view but not change 403.
    ``action_permissions`` maps @action names to permission-layer actions (e.g. upgrade).
    """

    action_permissions: dict[str, str] = {}

    def initial(self, request, *args, **kwargs):
        access.forget(request.user)  # grants are computed afresh for every request
        super().initial(request, *args, **kwargs)
        audit.set_actor(request.user, audit.client_ip(request))

    def get_queryset(self):
        return access.restrict(super().get_queryset(), self.request.user, "view")

    def recheck(self, instance, action: str) -> None:
        """Raise (rolling back the surrounding transaction) unless the caller may ``action`` the saved object."""
        model = type(instance)
        access.forget(self.request.user)
        if not access.restrict(model._default_manager.filter(pk=instance.pk), self.request.user, action).exists():
            raise exceptions.PermissionDenied(f"You may not {action} this {model._meta.verbose_name} here.")

    def perform_create(self, serializer):
        with transaction.atomic():
            instance = serializer.save(**self.extra_create_fields())
            self.recheck(instance, "view")
            audit.record("create", instance, changes=audit.diff(None, audit.snapshot(instance)))

    def extra_create_fields(self) -> dict:
        return {}

    def perform_update(self, serializer):
        with transaction.atomic():
            before = audit.snapshot(serializer.instance)
            instance = serializer.save()
            self.recheck(instance, "change")
            audit.record("update", instance, changes=audit.diff(before, audit.snapshot(instance)))

    def perform_destroy(self, instance):
        with transaction.atomic():
            audit.record("delete", instance, changes=audit.diff(audit.snapshot(instance), None))
            instance.delete()

    def get_action_name(self) -> str:
        return required_action(self.request, self)


class PortalModelViewSet(PortalViewSetMixin, viewsets.ModelViewSet):
    pass


class PortalReadOnlyViewSet(PortalViewSetMixin, viewsets.ReadOnlyModelViewSet):
    pass


class PortalCreateReadDeleteViewSet(
    PortalViewSetMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.ListModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    pass
