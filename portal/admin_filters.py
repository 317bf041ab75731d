"""Admin sidebar filters that offer only what the user may see.

Django's own filters read their choices from the related model's whole table (or, for
values reached across a relation, from the related table), so a "By cluster" filter would
list every tenant's clusters. :class:`~portal.admin_base.PortalModelAdmin` swaps these in
for every relation in ``list_filter``; admins never have to remember.
"""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path, get_model_from_relation
from django.db.models import Field, Model, Q, QuerySet
from django.http import HttpRequest

from rbac import access


def visible_related(field_path: str, related: type[Model], request: HttpRequest,
                    model_admin: admin.ModelAdmin) -> QuerySet:
    """The ``related`` objects a filter on ``field_path`` may offer to this user.

    Related models with an access rule: those the user may view. Models outside the tenancy
    tree (content types, ...): only values that occur in the rows the user already sees.
    """
    queryset = related._default_manager.all()
    try:
        access.rule_for(related)
    except LookupError:
        used = model_admin.get_queryset(request).order_by().values(f"{field_path}__pk")
        return queryset.filter(pk__in=used)
    return access.restrict(queryset, request.user, "view")


class RestrictedRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """"By cluster" and friends: choices come through :func:`rbac.access.restrict`."""

    def field_choices(self, field: Field, request: HttpRequest, model_admin) -> list[tuple[Any, str]]:
        related = get_model_from_relation(field)
        visible = visible_related(self.field_path, related, request, model_admin).order_by().values("pk")
        limit = Q(pk__in=visible)
        own_limit = field.get_limit_choices_to() if hasattr(field, "get_limit_choices_to") else None
        if own_limit:
            limit &= own_limit if isinstance(own_limit, Q) else Q(**own_limit)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, limit_choices_to=limit, ordering=ordering)


class RestrictedRelatedOnlyFieldListFilter(RestrictedRelatedFieldListFilter):
    """Like Django's RelatedOnlyFieldListFilter (values in use), still limited to what the user may see."""

    def field_choices(self, field: Field, request: HttpRequest, model_admin) -> list[tuple[Any, str]]:
        used = model_admin.get_queryset(request).order_by().values(f"{self.field_path}__pk")
        related = get_model_from_relation(field)
        visible = visible_related(self.field_path, related, request, model_admin).filter(pk__in=used)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, limit_choices_to=Q(pk__in=visible.order_by().values("pk")),
                                 ordering=ordering)


class RestrictedAllValuesFieldListFilter(admin.AllValuesFieldListFilter):
    """Plain values reached across a relation (``cluster__kind``): taken from the user's own rows.

    Django reads them from the related table when the path leaves the model.
    """

    def __init__(self, field: Field, request: HttpRequest, params: dict[str, list[str]], model: type[Model],
                 model_admin: admin.ModelAdmin, field_path: str) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = (
            model_admin.get_queryset(request).order_by(field_path).values_list(field_path, flat=True).distinct()
        )


def restricted_field_list_filter(field: Field, request: HttpRequest, params: dict[str, list[str]], model: type[Model],
                                 model_admin: admin.ModelAdmin, field_path: str) -> admin.FieldListFilter:
    """Drop-in for ``FieldListFilter.create``: the restricted filter where Django's would read other tenants' rows."""
    if field.is_relation:
        return RestrictedRelatedFieldListFilter(field, request, params, model, model_admin, field_path)
    spec = admin.FieldListFilter.create(field, request, params, model, model_admin, field_path)
    if type(spec) is admin.AllValuesFieldListFilter and "__" in (field_path or ""):
        return RestrictedAllValuesFieldListFilter(field, request, params, model, model_admin, field_path)
    return spec


_REPLACEMENTS = {
    admin.RelatedFieldListFilter: RestrictedRelatedFieldListFilter,
    admin.RelatedOnlyFieldListFilter: RestrictedRelatedOnlyFieldListFilter,
    admin.AllValuesFieldListFilter: RestrictedAllValuesFieldListFilter,
}


def restrict_list_filter(model: type[Model], list_filter: list | tuple) -> list:
    """``list_filter`` with every field filter that could read other tenants' data made restricted.

    Plain field names reaching a relation (or crossing one) get :func:`restricted_field_list_filter`;
    Django's related/all-values filter classes named explicitly are swapped for the restricted ones.
    Custom ``SimpleListFilter`` classes are left alone: they must use :mod:`rbac.access` themselves.
    """
    wrapped = []
    for item in list_filter:
        if isinstance(item, str):
            fields = get_fields_from_path(model, item)
            if len(fields) > 1 or fields[-1].is_relation:
                item = (item, restricted_field_list_filter)
        elif isinstance(item, (list, tuple)) and item[1] in _REPLACEMENTS:
            item = (item[0], _REPLACEMENTS[item[1]])
        wrapped.append(item)
    return wrapped
