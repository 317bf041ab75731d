"""The base every API viewset uses, so no endpoint can skip the permission layer or the audit log."""
from __future__ import annotations

import copy

from django.db import transaction
from rest_framework import mixins, viewsets

from portal import audit
from portal.api.permissions import required_action
from rbac import access


class PortalViewSetMixin:
    """Lists only what the caller may view; writes are re-checked and audited inside their transaction.

    Objects the caller may not view answer 404, objects they may view but not change 403.
    ``action_permissions`` maps @action names to permission-layer actions (e.g. upgrade).
    Every create, update and delete passes :func:`rbac.access.check_write` inside its transaction.
    """

    action_permissions: dict[str, str] = {}

    def initial(self, request, *args, **kwargs):
        access.forget(request.user)  # grants are computed afresh for every request
        super().initial(request, *args, **kwargs)
        audit.set_actor(request.user, audit.client_ip(request))

    def get_queryset(self):
        return access.restrict(super().get_queryset(), self.request.user, "view")

    # --- writes: the one write rule (rbac.access.check_write), before saving and again on the saved row ---

    def _m2m(self, model, data: dict) -> dict[str, list]:
        names = {f.name for f in model._meta.many_to_many}
        return {name: list(data[name]) for name in names if name in data}

    def _as_saved(self, serializer, extra: dict | None = None):
        """The object as the serializer would save it, unsaved, for checking before anything is written."""
        model = serializer.Meta.model
        data = {**serializer.validated_data, **(extra or {})}
        concrete = {f.name for f in model._meta.concrete_fields}
        if serializer.instance is None:
            return model(**{k: v for k, v in data.items() if k in concrete})
        obj = copy.copy(serializer.instance)
        obj._state = copy.copy(obj._state)  # its own related-object cache: the instance itself stays as loaded
        obj._state.fields_cache = dict(obj._state.fields_cache)
        for key, value in data.items():
            if key in concrete:
                setattr(obj, key, value)
        return obj

    def check_write(self, action: str, instance, *, before=None, related: dict | None = None) -> None:
        access.check_write(self.request.user, action, instance, before=before, related=related)

    #: False where the service that creates the object writes its own audit row (cluster imports).
    audit_create = True

    def perform_create(self, serializer):
        extra = self.extra_create_fields()
        related = self._m2m(serializer.Meta.model, serializer.validated_data)
        with transaction.atomic():
            self.check_write("add", self._as_saved(serializer, extra), related=related)
            instance = serializer.save(**extra)
            self.check_write("add", instance, related=related)
            if self.audit_create:
                audit.record("create", instance, changes=audit.diff(None, audit.snapshot(instance)))

    def extra_create_fields(self) -> dict:
        return {}

    def perform_update(self, serializer):
        related = self._m2m(serializer.Meta.model, serializer.validated_data)
        with transaction.atomic():
            model = type(serializer.instance)
            before = model._default_manager.select_for_update().get(pk=serializer.instance.pk)
            self.check_write("change", self._as_saved(serializer), before=before, related=related)
            snapshot = audit.snapshot(before)
            instance = serializer.save()
            self.check_write("change", instance, before=before)
            audit.record("update", instance, changes=audit.diff(snapshot, audit.snapshot(instance)))

    def perform_destroy(self, instance):
        with transaction.atomic():
            self.check_write("delete", instance)
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
