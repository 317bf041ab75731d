"""Generated tenancy tests: every API endpoint and every admin page, two tenants, no leaks.

Each tenant has a cluster (owned through a group binding) and a project (with a member bound
directly). A user of tenant A must never see tenant B's objects (object URLs answer 404) nor
change them; and must see their own, so the checks cannot pass by showing nothing.
"""
from __future__ import annotations

import pytest
from django.contrib import admin
from rest_framework.test import APIClient

from portal.api.urls import router
from tests.tenancy import FACTORIES, GLOBAL_MODELS, is_admin_only, make_tenant

API_ENDPOINTS = [
    (prefix, viewset) for prefix, viewset, _ in router.registry if viewset.queryset.model not in GLOBAL_MODELS
]
ADMIN_MODELS = [
    model for model, model_admin in admin.site._registry.items()
    if model not in GLOBAL_MODELS and not is_admin_only(model_admin)
]
ADMIN_ONLY_MODELS = [model for model, model_admin in admin.site._registry.items() if is_admin_only(model_admin)]


@pytest.fixture
def tenants(db):
    return make_tenant("ta"), make_tenant("tb")


def _ids(response) -> set:
    assert response.status_code == 200, response.content[:500]
    return {str(item["id"]) for item in response.json()["results"]}


def _client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.parametrize("prefix,viewset", API_ENDPOINTS, ids=[p for p, _ in API_ENDPOINTS])
def test_api_endpoint_isolates_tenants(tenants, prefix, viewset):
    model = viewset.queryset.model
    assert model in FACTORIES, f"{model._meta.label} has an API endpoint but no tenancy factory in tests/tenancy.py"
    a, b = tenants
    mine, theirs = FACTORIES[model](a), FACTORIES[model](b)
    for user in (a.owner, a.member):
        client = _client(user)
        listed = _ids(client.get(f"/v3/{prefix}/?page_size=1000"))
        assert str(theirs.pk) not in listed, f"{user} lists tenant B's {prefix}"
        url = f"/v3/{prefix}/{theirs.pk}/"
        assert client.get(url).status_code == 404
        assert client.patch(url, {}, format="json").status_code in (404, 405)
        assert client.put(url, {}, format="json").status_code in (404, 405)
        assert client.delete(url).status_code in (404, 405)
    assert model._default_manager.filter(pk=theirs.pk).exists()
    owner = _client(a.owner)
    assert owner.get(f"/v3/{prefix}/{mine.pk}/").status_code == 200, f"tenant A's owner cannot see its own {prefix}"
    assert str(mine.pk) in _ids(owner.get(f"/v3/{prefix}/?page_size=1000"))


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=[m._meta.label for m in ADMIN_MODELS])
def test_admin_pages_isolate_tenants(client, tenants, model):
    assert model in FACTORIES, f"{model._meta.label} has an admin page but no tenancy factory in tests/tenancy.py"
    a, b = tenants
    mine, theirs = FACTORIES[model](a), FACTORIES[model](b)
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    for user in (a.owner, a.member):
        client.force_login(user)
        page = client.get(base)
        assert page.status_code == 200
        assert f"{base}{theirs.pk}/change/" not in page.content.decode()
        assert client.get(f"{base}{theirs.pk}/change/").status_code == 404
        assert client.post(f"{base}{theirs.pk}/change/", {}).status_code in (403, 404)
        assert client.post(f"{base}{theirs.pk}/delete/", {"post": "yes"}).status_code in (403, 404)
    assert model._default_manager.filter(pk=theirs.pk).exists()
    client.force_login(a.owner)
    assert client.get(f"{base}{mine.pk}/change/").status_code == 200
    assert f"{base}{mine.pk}/change/" in client.get(base).content.decode()


def test_group_binding_takes_effect_and_goes_away_on_the_next_request(tenants, django_user_model):
    from rbac.models import ClusterRoleBinding, Group, RoleTemplate

    a, b = tenants
    carol = django_user_model.objects.create_user("carol", password="pw-123456")
    auditors = Group.objects.create(name="auditors")
    auditors.members.add(carol)
    client = _client(carol)
    url = f"/v3/clusters/{b.cluster.pk}/"
    assert client.get(url).status_code == 404

    binding = ClusterRoleBinding.objects.create(
        cluster=b.cluster, role=RoleTemplate.objects.get(name="cluster-member"), group=auditors
    )
    assert client.get(url).status_code == 200
    assert str(b.cluster.pk) in _ids(client.get("/v3/clusters/"))
    assert client.patch(url, {"description": "x"}, format="json").status_code == 403  # member: view only

    binding.delete()
    assert client.get(url).status_code == 404
    ClusterRoleBinding.objects.create(cluster=b.cluster, role=RoleTemplate.objects.get(name="cluster-member"),
                                      group=auditors)
    assert client.get(url).status_code == 200
    auditors.members.remove(carol)
    assert client.get(url).status_code == 404


def test_capabilities_tell_what_the_caller_may_do(tenants):
    a, _ = tenants
    owner_view = _client(a.owner).get(f"/v3/clusters/{a.cluster.pk}/").json()
    member_view = _client(a.member).get(f"/v3/clusters/{a.cluster.pk}/").json()
    assert owner_view["capabilities"]["upgrade"] is True and owner_view["capabilities"]["delete"] is True
    assert member_view["capabilities"] == {k: k == "view" for k in member_view["capabilities"]}


@pytest.mark.parametrize("model", ADMIN_ONLY_MODELS, ids=[m._meta.label for m in ADMIN_ONLY_MODELS])
def test_admin_only_pages_refuse_tenant_users(client, tenants, admin_user, model):
    a, _ = tenants
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    client.force_login(a.owner)
    refused = client.get(base)
    assert refused.status_code == 403 or refused["Location"].startswith("/admin/login/")
    first = model._default_manager.first() if model._meta.managed else None
    if first is not None:
        assert client.get(f"{base}{first.pk}/change/").status_code in (403, 404)
    client.force_login(admin_user)
    assert client.get(base).status_code == 200


def test_global_directory_is_read_only_for_users(tenants):
    from rbac.models import Group

    a, b = tenants
    client = _client(a.owner)
    assert client.patch(f"/v3/groups/{b.group.pk}/", {"name": "mine"}, format="json").status_code == 403
    assert client.patch(f"/v3/users/{b.owner.pk}/", {"username": "x"}, format="json").status_code == 405
    assert Group.objects.get(pk=b.group.pk).name == "tb-admins"
    response = client.post(f"/admin/auth/user/{b.owner.pk}/change/", {"username": "hacked"})
    assert response.status_code == 403
    assert not type(a.owner).objects.filter(username="hacked").exists()
