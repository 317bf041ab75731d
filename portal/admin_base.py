"""The base ModelAdmin: every admin page goes through the permission layer."""
from __future__ import annotations

from django.contrib import admin
from django.db import transaction
from django.http import Http404

from portal import audit
from portal.admin_filters import restrict_list_filter
from portal.crypto import EncryptedTextField
from portal.forms import SecretsKeptForm, SecretWidget
from rbac import access


class PortalModelAdmin(admin.ModelAdmin):
    """Querysets, buttons and related-object choices all come from :mod:`rbac.access`.

    Objects a user may not see answer 404, like the API.
    """

    form = SecretsKeptForm
    formfield_overrides = {EncryptedTextField: {"widget": SecretWidget}}

    def get_queryset(self, request):
        return access.restrict(super().get_queryset(request), request.user, "view")

    def has_module_permission(self, request) -> bool:
        return request.user.is_active

    def has_view_permission(self, request, obj=None) -> bool:
        if obj is None:
            return request.user.is_active
        return access.can(request.user, "view", obj)

    def has_add_permission(self, request) -> bool:
        return access.may_add_somewhere(request.user, self.model)

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is None:
            return access.restrict(self.model._default_manager.all(), request.user, "change").exists()
        return access.can(request.user, "change", obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is None:
            return access.restrict(self.model._default_manager.all(), request.user, "delete").exists()
        return access.can(request.user, "delete", obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and hasattr(field, "queryset"):
            field.queryset = self._restrict_choices(field.queryset, request)
        return field

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if field is not None and hasattr(field, "queryset"):
            field.queryset = self._restrict_choices(field.queryset, request)
        return field

    @staticmethod
    def _restrict_choices(queryset, request):
        try:
            access.rule_for(queryset.model)
        except LookupError:
            # Models outside the tenancy tree (content types, ...) are offered only to admins.
            return queryset if access.grants_for(request.user).is_admin() else queryset.none()
        return access.restrict(queryset, request.user, "view")

    def get_list_filter(self, request) -> list:
        """Sidebar filters on relations offer only what the user may see (Django's read the whole table)."""
        return restrict_list_filter(self.model, super().get_list_filter(request))

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404(f"No {opts.verbose_name} with id {object_id} that you may see.")

    # --- writes: every save, delete, inline row and bulk action passes rbac.access.check_write ---

    @staticmethod
    def stored(obj):
        """The row as it is in the database (locked for the write's transaction), or None for a new object."""
        return type(obj)._default_manager.select_for_update().get(pk=obj.pk) if obj.pk else None

    @staticmethod
    def m2m_of(obj, form) -> dict[str, list]:
        data = getattr(form, "cleaned_data", {}) or {}
        return {f.name: list(data[f.name]) for f in obj._meta.many_to_many if f.name in data}

    def check_write(self, request, action: str, obj, *, before=None, form=None) -> None:
        access.check_write(request.user, action, obj, before=before,
                           related=self.m2m_of(obj, form) if form is not None else None)

    def save_model(self, request, obj, form, change):
        if not change and hasattr(obj, "created_by_id") and obj.created_by_id is None:
            obj.created_by = request.user
        stored = self.stored(obj) if change else None
        self.check_write(request, "change" if change else "add", obj, before=stored, form=form)
        before = audit.snapshot(stored) if change else None
        super().save_model(request, obj, form, change)
        audit.record("update" if change else "create", obj, changes=audit.diff(before, audit.snapshot(obj)))

    def get_deleted_objects(self, objs, request):
        """Records only the system writes (nodes, upgrades) go with what they belong to: their admins refuse every
        delete, and Django would refuse deleting anything holding one (a cluster with nodes), even to superusers."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        system = {m._meta.verbose_name for m, a in self.admin_site._registry.items() if isinstance(a, ReadOnlyAdminMixin)}
        return deleted, counts, perms_needed - system, protected

    def delete_model(self, request, obj):
        self.check_write(request, "delete", obj)
        audit.record("delete", obj, changes=audit.diff(audit.snapshot(obj), None))
        super().delete_model(request, obj)

    @transaction.atomic
    def delete_queryset(self, request, queryset):
        """The bulk "delete selected" action: every row is checked, one refusal deletes nothing."""
        for obj in queryset:
            self.check_write(request, "delete", obj)
            audit.record("delete", obj, changes=audit.diff(audit.snapshot(obj), None))
        super().delete_queryset(request, queryset)

    def save_formset(self, request, form, formset, change):
        """Inline rows are writes of their own: added, changed and deleted rows are each checked."""
        for row in formset.forms:
            obj = row.instance
            if formset.can_delete and formset._should_delete_form(row):
                if obj.pk is not None:
                    self.check_write(request, "delete", obj)
                continue
            if obj.pk is None and not row.has_changed():
                continue
            if obj.pk is None:
                self.check_write(request, "add", obj, form=row)
            elif row.has_changed():
                self.check_write(request, "change", obj, before=self.stored(obj), form=row)
        super().save_formset(request, form, formset, change)

    def save_related(self, request, form, formsets, change):
        """Inline rows are audited like top-level objects."""
        super().save_related(request, form, formsets, change)
        for formset in formsets:
            for obj in formset.new_objects:
                audit.record("create", obj, changes=audit.diff(None, audit.snapshot(obj)))
            for obj, fields in formset.changed_objects:
                audit.record("update", obj, message=f"changed {', '.join(fields)}")
            for obj in formset.deleted_objects:
                audit.record("delete", obj)


class ReadOnlyAdminMixin:
    """Records only the system writes (audit rows, upgrades, inventory): shown, never edited here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
