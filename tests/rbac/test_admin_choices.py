"""Generated tests: admin filters, date drilldowns, form choice lists and autocomplete show only what the user may see.

Two tenants, as in test_isolation. For every registered admin page, a user of tenant A must be
offered none of tenant B's clusters, projects or other objects anywhere a choice is listed, while
an admin is offered both tenants' (so each check can fail). Taken cluster names get one generic
answer, whether the clash is with a cluster the caller sees or one they do not.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path, get_model_from_relation
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError
from django.test import RequestFactory
from rest_framework.test import APIClient

from clusters import inventory
from clusters.forms import NAME_NOT_AVAILABLE, ClusterForm
from clusters.models import Cluster, Node, Project
from portal.admin_base import PortalModelAdmin
from portal.models import AuditEvent
from rbac import access
from rbac.models import ClusterRoleBinding, RoleTemplate
from tests.tenancy import FACTORIES, Tenant, is_admin_only, make_tenant

pytestmark = pytest.mark.django_db

PORTAL_ADMINS = [(model, model_admin) for model, model_admin in admin.site._registry.items()
                 if not is_admin_only(model_admin)]


def _filter_path(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, (list, tuple)):
        return item[0]
    return item.parameter_name  # a SimpleListFilter class


LIST_FILTERS = [(model, _filter_path(item)) for model, model_admin in PORTAL_ADMINS for item in model_admin.list_filter]
DATE_HIERARCHIES = [(model, model_admin.date_hierarchy) for model, model_admin in PORTAL_ADMINS
                    if model_admin.date_hierarchy]
RELATION_FIELDS = [
    (model, field.name) for model in admin.site._registry for field in model._meta.get_fields()
    if field.concrete and field.is_relation and field.remote_field.model in admin.site._registry
]
B_NAMES = ("tb-cluster", "tb-project", "tb-node-1")
LONG_AGO = datetime(2001, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class World:
    a: Tenant
    b: Tenant
    mine: dict[type, set]  # tenant A's objects by model
    theirs: dict[type, set]  # tenant B's objects by model

    def users(self) -> tuple:
        return self.a.owner, self.a.member


@pytest.fixture
def world(db) -> World:
    a, b = make_tenant("ta"), make_tenant("tb")
    # A second cluster for tenant A's owner, so that its "By cluster" filters have two choices and are shown.
    second = Cluster.objects.create(name="ta-cluster-2", kubeconfig="kubeconfig", state="active")
    ClusterRoleBinding.objects.create(cluster=second, role=RoleTemplate.objects.get(name="cluster-owner"), group=a.group)
    mine, theirs = defaultdict(set), defaultdict(set)
    for tenant, into in ((a, mine), (b, theirs)):
        into[Cluster].add(tenant.cluster.pk)
        into[Project].add(tenant.project.pk)
        for model, make in FACTORIES.items():
            obj = make(tenant)
            into[model].add(obj.pk)
            if model is AuditEvent:
                # Each tenant's audit row is about a different kind of object (for the object_type filter).
                kind = Cluster if tenant is a else Node
                model._default_manager.filter(pk=obj.pk).update(object_type=ContentType.objects.get_for_model(kind))
    mine[Cluster].add(second.pk)
    # Tenant B's dated rows lie in 2001: a date drilldown showing 2001 to tenant A would be a leak.
    for model, field in DATE_HIERARCHIES:
        model._default_manager.filter(pk__in=theirs[model]).update(**{field: LONG_AGO})
    for user in (a.owner, a.member, b.owner, b.member):
        access.forget(user)
    return World(a, b, mine, theirs)


def _base(model) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


def _sidebar(page: str) -> str:
    """The changelist's filter sidebar (empty when no filter has anything to offer)."""
    start = page.find('id="changelist-filter"')
    return "" if start < 0 else page[start:page.index("</nav>", start)]


def _mentions_id(html: str, pk) -> bool:
    return re.search(rf"__(?:id|pk)__exact={pk}(?![0-9])", html) is not None


def _spec(model, user, path: str):
    """The filter the changelist builds for ``path``, built even when it has too few choices to be shown."""
    model_admin = admin.site._registry[model]
    request = RequestFactory().get(_base(model))
    request.user = user
    access.forget(user)
    field = get_fields_from_path(model, path)[-1]
    for entry in model_admin.get_list_filter(request):
        if entry == path:
            return admin.FieldListFilter.create(field, request, {}, model, model_admin, field_path=path)
        if isinstance(entry, (list, tuple)) and entry[0] == path:
            return entry[1](field, request, {}, model, model_admin, field_path=path)
    raise AssertionError(f"{path} not in {model_admin}'s list_filter")


def _target(model, path: str) -> type | None:
    """The model a filter's choices are objects of (None for plain values or custom filters)."""
    try:
        field = get_fields_from_path(model, path)[-1]
    except Exception:
        return None
    return get_model_from_relation(field) if field.is_relation else None


# --------------------------------------------------------------------------------------------- list filters

@pytest.mark.parametrize("model,path", LIST_FILTERS, ids=[f"{m._meta.label}-{p}" for m, p in LIST_FILTERS])
def test_list_filter_offers_only_what_the_user_may_see(client, admin_user, world, model, path):
    base = _base(model)
    target = _target(model, path)
    for user in world.users():
        client.force_login(user)
        page = client.get(base)
        assert page.status_code == 200
        sidebar = _sidebar(page.content.decode())
        for name in B_NAMES:
            assert name not in sidebar, f"{user} is offered {name} in the filters of {base}"
        for pk in world.theirs[Cluster] | world.theirs[Project]:
            assert not _mentions_id(sidebar, pk) or target not in (Cluster, Project), sidebar
        if target is not None and target is not ContentType:
            offered = {pk for pk, _label in _spec(model, user, path).lookup_choices}
            assert not offered & world.theirs[target], f"{user} is offered tenant B's {target.__name__} by {path}"
            if target is Cluster and user == world.a.owner:
                assert world.mine[Cluster] <= offered, "tenant A's owner is not offered its own clusters"
    if target in (Cluster, Project):
        client.force_login(admin_user)
        sidebar = _sidebar(client.get(base).content.decode())
        kind = "cluster" if target is Cluster else "project"
        assert f"tb-{kind}" in sidebar and f"ta-{kind}" in sidebar, f"an admin should be offered every {kind}"
        offered = {pk for pk, _label in _spec(model, admin_user, path).lookup_choices}
        assert world.theirs[target] | world.mine[target] <= offered


def test_changelist_filtered_to_an_invisible_cluster_names_nothing(client, world):
    client.force_login(world.a.owner)
    theirs = world.b.cluster.pk
    for model, path in LIST_FILTERS:
        if _target(model, path) is Cluster:
            page = client.get(f"{_base(model)}?{path}__id__exact={theirs}&_facets=True").content.decode()
            assert not any(name in page for name in B_NAMES), f"{model._meta.label} filtered by {path}"


def test_filter_on_a_model_without_access_rule_offers_only_values_of_visible_rows(admin_user, world):
    """Content types have no access rule: the audit log's "object type" filter offers those of one's own rows."""
    cluster_type, node_type = (ContentType.objects.get_for_model(m).pk for m in (Cluster, Node))
    offered = {pk for pk, _label in _spec(AuditEvent, world.a.owner, "object_type").lookup_choices}
    assert cluster_type in offered and node_type not in offered
    assert not {pk for pk, _label in _spec(AuditEvent, world.a.member, "object_type").lookup_choices}
    assert {cluster_type, node_type} <= {pk for pk, _l in _spec(AuditEvent, admin_user, "object_type").lookup_choices}


def test_any_relation_filter_a_new_admin_declares_is_restricted(admin_user, world):
    """Plain names, values across a relation and Django's own filter classes are all swapped for restricted ones."""

    class Declared(PortalModelAdmin):
        list_filter = ["cluster", "cluster__name", "cluster__kind", ("cluster", admin.RelatedFieldListFilter),
                       ("cluster", admin.RelatedOnlyFieldListFilter), ("cluster__name", admin.AllValuesFieldListFilter)]

    model_admin = Declared(Node, admin.site)

    def offered(user) -> list[set]:
        request = RequestFactory().get("/")
        request.user = user
        access.forget(user)
        seen = []
        for path, cls in model_admin.get_list_filter(request):
            spec = cls(get_fields_from_path(Node, path)[-1], request, {}, Node, model_admin, field_path=path)
            seen.append({str(c[1] if isinstance(c, tuple) else c) for c in getattr(spec, "lookup_choices", ())})
        return seen

    for choices in offered(world.a.owner):
        assert "tb-cluster" not in choices
    by_admin = offered(admin_user)
    assert all("tb-cluster" in by_admin[i] for i in (0, 1, 3, 4, 5)), by_admin


# --------------------------------------------------------------------------------------------- date drilldowns

@pytest.mark.parametrize("model,field", DATE_HIERARCHIES, ids=[m._meta.label for m, _ in DATE_HIERARCHIES])
def test_date_drilldown_shows_only_dates_of_visible_rows(client, admin_user, world, model, field):
    assert world.theirs[model], f"{model._meta.label} has a date hierarchy but no tenancy factory"
    base = _base(model)
    for user in world.users():
        client.force_login(user)
        assert f"{field}__year=2001" not in client.get(base).content.decode()
        assert f"{field}__month=2" not in client.get(f"{base}?{field}__year=2001").content.decode()
    client.force_login(admin_user)
    assert f"{field}__year=2001" in client.get(base).content.decode()
    assert f"{field}__month=2" in client.get(f"{base}?{field}__year=2001").content.decode()


# --------------------------------------------------------------------------------------------- form choice lists

def _offered_in_forms(response) -> dict[type, set]:
    """Every object any choice field of the page's form and inline forms offers, by model."""
    forms = []
    if "adminform" in response.context:
        forms.append(response.context["adminform"].form)
    for inline in response.context.get("inline_admin_formsets", None) or []:
        forms.extend(inline.formset.forms)
        forms.append(inline.formset.empty_form)
    offered = defaultdict(set)
    for form in forms:
        for field in form.fields.values():
            queryset = getattr(field, "queryset", None)
            # Hidden fields (an inline row's own id) render their value, never their queryset as choices.
            if queryset is not None and not field.widget.is_hidden:
                offered[queryset.model] |= set(queryset.values_list("pk", flat=True))
    return offered


def _form_pages(model, world) -> list[str]:
    pages = [f"{_base(model)}add/"]
    pages += [f"{_base(model)}{pk}/change/" for pk in sorted(world.mine.get(model, ()))]
    return pages


@pytest.mark.parametrize("model", [m for m, _ in PORTAL_ADMINS], ids=[m._meta.label for m, _ in PORTAL_ADMINS])
def test_form_choice_lists_offer_only_what_the_user_may_see(client, admin_user, world, model):
    for user in world.users():
        client.force_login(user)
        for url in _form_pages(model, world):
            response = client.get(url)
            assert response.status_code in (200, 302, 403, 404), url
            if response.status_code != 200:
                continue
            page = response.content.decode()
            assert not any(name in page for name in B_NAMES), f"{user} is shown tenant B's objects on {url}"
            for related, pks in _offered_in_forms(response).items():
                assert not pks & world.theirs[related], f"{user} is offered tenant B's {related.__name__} on {url}"
                try:
                    access.rule_for(related)
                except LookupError:
                    assert not pks, f"{user} is offered {related.__name__} objects, which have no access rule, on {url}"
    client.force_login(admin_user)
    response = client.get(f"{_base(model)}add/")
    if response.status_code == 200:
        for related, pks in _offered_in_forms(response).items():
            if related in (Cluster, Project):
                assert world.theirs[related] <= pks, f"an admin should be offered every {related.__name__}"


def test_admin_is_offered_both_tenants_clusters(client, admin_user, world):
    """The generated form check above can fail: the project add form lists every cluster to an admin."""
    client.force_login(admin_user)
    offered = _offered_in_forms(client.get("/admin/clusters/project/add/"))
    assert world.mine[Cluster] | world.theirs[Cluster] <= offered[Cluster]
    client.force_login(world.a.owner)
    offered = _offered_in_forms(client.get("/admin/clusters/project/add/"))
    assert world.a.cluster.pk in offered[Cluster] and not offered[Cluster] & world.theirs[Cluster]


# --------------------------------------------------------------------------------------------- autocomplete

@pytest.mark.parametrize("model,field_name", RELATION_FIELDS,
                         ids=[f"{m._meta.label}.{f}" for m, f in RELATION_FIELDS])
def test_autocomplete_answers_only_what_the_user_may_see(client, admin_user, world, model, field_name):
    remote = model._meta.get_field(field_name).remote_field.model
    remote_admin = admin.site._registry[remote]
    url = (f"/admin/autocomplete/?app_label={model._meta.app_label}&model_name={model._meta.model_name}"
           f"&field_name={field_name}&term=")
    for user in world.users():
        client.force_login(user)
        response = client.get(url)
        if not remote_admin.get_search_fields(None):
            assert response.status_code in (403, 404)
            continue
        if is_admin_only(remote_admin):
            assert response.status_code == 403, f"{user} may search {remote._meta.label}, an admin-only page"
            continue
        assert response.status_code == 200, response.content[:300]
        results = response.json()["results"]
        ids = {r["id"] for r in results}
        assert not ids & {str(pk) for pk in world.theirs[remote]}, f"{user} is answered tenant B's {remote.__name__}"
        assert not any(name in r["text"] for r in results for name in B_NAMES)
    client.force_login(admin_user)
    response = client.get(url)
    if response.status_code == 200 and remote in (Cluster, Project):
        assert {str(pk) for pk in world.theirs[remote]} <= {r["id"] for r in response.json()["results"]}


def test_autocomplete_honours_view_permission(client, world, monkeypatch):
    client.force_login(world.a.owner)
    url = "/admin/autocomplete/?app_label=clusters&model_name=project&field_name=cluster&term=ta"
    assert {r["text"] for r in client.get(url).json()["results"]} == {"ta-cluster", "ta-cluster-2"}
    monkeypatch.setattr(type(admin.site._registry[Cluster]), "has_view_permission", lambda self, request, obj=None: False)
    assert client.get(url).status_code == 403


def test_no_page_offers_raw_id_lookups_to_tenant_users():
    """A raw-id widget prints the label of whatever id is typed in, from the whole table: only admin-only pages may use one."""
    assert not [model for model, model_admin in PORTAL_ADMINS if model_admin.raw_id_fields]


# --------------------------------------------------------------------------------------------- taken names

def _api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _name_errors(response) -> list:
    assert response.status_code == 400, response.content[:500]
    return response.json()["error"]["fields"]["name"]


def test_taken_cluster_name_is_answered_alike_over_the_api(world, fleet):
    api = _api(world.a.owner)
    kubeconfig = fleet.kubeconfig("rke-a")
    before = Cluster.objects.count()
    visible = api.post("/v3/clusters/", {"name": "ta-cluster", "kubeconfig": kubeconfig}, format="json")
    invisible = api.post("/v3/clusters/", {"name": "tb-cluster", "kubeconfig": kubeconfig}, format="json")
    assert _name_errors(visible) == _name_errors(invisible) == [NAME_NOT_AVAILABLE]
    assert visible.json() == invisible.json()
    assert "already exists" not in invisible.content.decode()
    assert Cluster.objects.count() == before
    renamed = [api.patch(f"/v3/clusters/{world.a.cluster.pk}/", {"name": name}, format="json")
               for name in ("ta-cluster-2", "tb-cluster")]
    assert _name_errors(renamed[0]) == _name_errors(renamed[1]) == [NAME_NOT_AVAILABLE]
    assert api.post("/v3/clusters/", {"name": "ta-new", "kubeconfig": kubeconfig}, format="json").status_code == 201


def test_name_lost_in_a_race_is_answered_alike(world, fleet, monkeypatch):
    def clash(**kwargs):
        raise IntegrityError('duplicate key value violates unique constraint "clusters_cluster_name_key"')

    monkeypatch.setattr(inventory, "import_cluster", clash)
    response = _api(world.a.owner).post("/v3/clusters/", {"name": "ta-new", "kubeconfig": fleet.kubeconfig("rke-a")},
                                        format="json")
    assert _name_errors(response) == [NAME_NOT_AVAILABLE]


def test_taken_cluster_name_is_answered_alike_in_the_admin(client, world, fleet):
    client.force_login(world.a.owner)
    kubeconfig = fleet.kubeconfig("rke-a")
    errors = []
    for name in ("ta-cluster", "tb-cluster"):
        response = client.post("/admin/clusters/cluster/add/", {"name": name, "description": "", "kubeconfig": kubeconfig})
        assert response.status_code == 200
        errors.append(response.context["adminform"].form.errors["name"])
        assert "already exists" not in response.content.decode()
    assert errors[0] == errors[1] == [NAME_NOT_AVAILABLE]
    assert not Cluster.objects.filter(created_by=world.a.owner).exists()
    renames = [ClusterForm(data={"name": name, "description": "", "kubeconfig": ""}, instance=world.a.cluster)
               for name in ("ta-cluster-2", "tb-cluster")]
    assert [form.is_valid() for form in renames] == [False, False]
    assert renames[0].errors["name"] == renames[1].errors["name"] == [NAME_NOT_AVAILABLE]
