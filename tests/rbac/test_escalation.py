"""Escalation: for each non-admin built-in role, every way the API and admin offer to gain a permission.

Each attempt runs in a savepoint. After it, the actor's permissions (recomputed from the
database: superuser flag, global, per-cluster and per-project permissions) must be what they
were, the superuser must have no new token and the same password. Attempts that a role may
legitimately make (a cluster-owner binding cluster-owner on its own cluster) are allowed
to succeed: they give nothing new, which is the point.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from portal.models import ApiToken
from rbac.models import ClusterRoleBinding, GlobalRole, GlobalRoleBinding, ProjectRoleBinding, RoleTemplate
from tests.rbac.writes import ROLES, World, grants_snapshot, make_world

ATTEMPTS: dict[str, Callable[[World, APIClient, Client], object]] = {}


def attempt(fn):
    ATTEMPTS[fn.__name__] = fn
    return fn


def _role(name: str, model=GlobalRole):
    return model.objects.get(name=name)


# --- API -------------------------------------------------------------------------------------------

@attempt
def api_bind_admin_to_self(w, api, web):
    api.post("/v3/globalrolebindings/", {"role": _role("admin").pk, "user": w.actor.pk}, format="json")


@attempt
def api_bind_restricted_admin_to_self(w, api, web):
    api.post("/v3/globalrolebindings/", {"role": _role("restricted-admin").pk, "user": w.actor.pk}, format="json")


@attempt
def api_make_star_global_role_and_bind_it(w, api, web):
    r = api.post("/v3/globalroles/", {"name": "mine", "permissions": ["*"]}, format="json")
    role = GlobalRole.objects.filter(name="mine").first()
    if role is not None or r.status_code == 201:
        api.post("/v3/globalrolebindings/", {"role": role.pk, "user": w.actor.pk}, format="json")


@attempt
def api_widen_a_role_i_hold(w, api, web):
    api.patch(f"/v3/globalroles/{w.custom_global.pk}/", {"permissions": ["*"]}, format="json")


@attempt
def api_widen_builtin_user_role(w, api, web):
    api.patch(f"/v3/globalroles/{_role('user').pk}/", {"permissions": ["*"]}, format="json")
    api.put(f"/v3/globalroles/{_role('user').pk}/", {"name": "user", "permissions": ["*"]}, format="json")


@attempt
def api_make_star_role_template_and_bind_it(w, api, web):
    api.post("/v3/roletemplates/", {"name": "mine", "context": "cluster", "permissions": ["*"]}, format="json")
    role = RoleTemplate.objects.filter(name="mine").first()
    if role is not None:
        for cluster in (w.a.cluster, w.b.cluster):
            api.post("/v3/clusterrolebindings/", {"cluster": cluster.pk, "role": role.pk, "user": w.actor.pk},
                     format="json")


@attempt
def api_widen_a_role_template_i_hold(w, api, web):
    api.patch(f"/v3/roletemplates/{w.custom_template.pk}/", {"permissions": ["*"]}, format="json")


@attempt
def api_bind_cluster_owner_to_self(w, api, web):
    role = _role("cluster-owner", RoleTemplate)
    for cluster in (w.a.cluster, w.b.cluster):
        api.post("/v3/clusterrolebindings/", {"cluster": cluster.pk, "role": role.pk, "user": w.actor.pk},
                 format="json")


@attempt
def api_bind_project_owner_to_self(w, api, web):
    role = _role("project-owner", RoleTemplate)
    for project in (w.a.project, w.b.project):
        api.post("/v3/projectrolebindings/", {"project": project.pk, "role": role.pk, "user": w.actor.pk},
                 format="json")


@attempt
def api_upgrade_my_own_binding(w, api, web):
    for binding in ClusterRoleBinding.objects.filter(user=w.actor):
        api.patch(f"/v3/clusterrolebindings/{binding.pk}/", {"role": _role("cluster-owner", RoleTemplate).pk},
                  format="json")
        api.patch(f"/v3/clusterrolebindings/{binding.pk}/", {"cluster": w.b.cluster.pk}, format="json")
    for binding in ProjectRoleBinding.objects.filter(user=w.actor):
        api.patch(f"/v3/projectrolebindings/{binding.pk}/", {"role": _role("project-owner", RoleTemplate).pk},
                  format="json")
        api.patch(f"/v3/projectrolebindings/{binding.pk}/", {"project": w.b.project.pk}, format="json")
    for binding in GlobalRoleBinding.objects.filter(user=w.actor):
        api.patch(f"/v3/globalrolebindings/{binding.pk}/", {"role": _role("admin").pk}, format="json")


@attempt
def api_swap_subject_of_a_stronger_binding(w, api, web):
    owners = ClusterRoleBinding.objects.filter(cluster=w.a.cluster, role__name="cluster-owner", group=w.a.group)
    for binding in owners:
        api.patch(f"/v3/clusterrolebindings/{binding.pk}/", {"user": w.actor.pk, "group": None}, format="json")
    admins = GlobalRoleBinding.objects.filter(group=w.admin_group)
    for binding in admins:
        api.patch(f"/v3/globalrolebindings/{binding.pk}/", {"user": w.actor.pk, "group": None}, format="json")


@attempt
def api_join_a_powerful_group(w, api, web):
    for group in (w.admin_group, w.a.group, w.b.group):
        members = list(group.members.values_list("pk", flat=True)) + [w.actor.pk]
        api.patch(f"/v3/groups/{group.pk}/", {"members": members}, format="json")


@attempt
def api_make_a_group_with_me_and_bind_it(w, api, web):
    r = api.post("/v3/groups/", {"name": "my-crew", "members": [w.actor.pk]}, format="json")
    if r.status_code == 201:
        group_id = r.json()["id"]
        api.post("/v3/globalrolebindings/", {"role": _role("admin").pk, "group": group_id}, format="json")
        api.post("/v3/clusterrolebindings/", {"cluster": w.b.cluster.pk, "role": _role("cluster-owner", RoleTemplate).pk,
                                               "group": group_id}, format="json")


@attempt
def api_mint_token_for_root(w, api, web):
    api.post("/v3/tokens/", {"description": "x", "user": w.root.pk}, format="json")


@attempt
def api_make_myself_superuser(w, api, web):
    api.patch(f"/v3/users/{w.actor.pk}/", {"is_superuser": True}, format="json")
    api.patch("/v3/users/me/", {"is_superuser": True}, format="json")


# --- admin -----------------------------------------------------------------------------------------

@attempt
def admin_mint_token_for_root(w, api, web):
    web.post("/admin/portal/apitoken/add/", {"user": w.root.pk, "description": "x"})


@attempt
def admin_make_myself_superuser(w, api, web):
    web.post(f"/admin/auth/user/{w.actor.pk}/change/",
             {"username": w.actor.username, "is_active": "on", "is_superuser": "on", "email": "", "first_name": "",
              "last_name": ""})


@attempt
def admin_set_roots_password(w, api, web):
    web.post(f"/admin/auth/user/{w.root.pk}/password/",
             {"password1": "taken-over-1!", "password2": "taken-over-1!", "usable_password": "true",
              "set_usable_password": "true"})


@attempt
def admin_join_the_admin_group(w, api, web):
    web.post(f"/admin/rbac/group/{w.admin_group.pk}/change/",
             {"name": w.admin_group.name, "provider": "", "description": "",
              "members": [w.root.pk, w.actor.pk]})


@attempt
def admin_bind_admin_to_self(w, api, web):
    web.post("/admin/rbac/globalrolebinding/add/", {"role": _role("admin").pk, "user": w.actor.pk})


@attempt
def admin_bind_owner_roles_to_self(w, api, web):
    web.post("/admin/rbac/clusterrolebinding/add/",
             {"cluster": w.b.cluster.pk, "role": _role("cluster-owner", RoleTemplate).pk, "user": w.actor.pk})
    web.post("/admin/rbac/clusterrolebinding/add/",
             {"cluster": w.a.cluster.pk, "role": _role("cluster-owner", RoleTemplate).pk, "user": w.actor.pk})
    web.post("/admin/rbac/projectrolebinding/add/",
             {"project": w.a.project.pk, "role": _role("project-owner", RoleTemplate).pk, "user": w.actor.pk})


@attempt
def admin_make_star_role(w, api, web):
    web.post("/admin/rbac/globalrole/add/", {"name": "mine", "description": "", "permissions": '["*"]'})
    web.post(f"/admin/rbac/globalrole/{w.custom_global.pk}/change/",
             {"name": w.custom_global.name, "description": "", "permissions": '["*"]'})
    web.post(f"/admin/rbac/roletemplate/{w.custom_template.pk}/change/",
             {"name": w.custom_template.name, "description": "", "context": "cluster", "permissions": '["*"]'})


# --- the test --------------------------------------------------------------------------------------

class _Undo(Exception):
    pass


def _stakes(w: World) -> tuple:
    w.root.refresh_from_db()
    return (grants_snapshot(w.actor), ApiToken.objects.filter(user=w.root).count(),
            w.root.check_password("pw-root-123"))


NON_ADMIN_ROLES = [r for r in ROLES if r != "admin"]


@pytest.mark.parametrize("role", NON_ADMIN_ROLES)
def test_no_role_can_gain_a_permission(db, role):
    world = make_world(role)
    # The actor also holds two harmless custom roles, so "widen a role I hold" has something to widen.
    GlobalRoleBinding.objects.create(role=world.custom_global, user=world.actor)
    ClusterRoleBinding.objects.create(cluster=world.a.cluster, role=world.custom_template, user=world.actor)
    api = APIClient()
    api.force_login(world.actor)
    web = Client()
    web.force_login(world.actor)
    before = _stakes(world)
    gained = []
    for name, fn in ATTEMPTS.items():
        try:
            with transaction.atomic():
                fn(world, api, web)
                after = _stakes(world)
                if after != before:
                    gained.append(f"{name}: {before} -> {after}")
                raise _Undo
        except _Undo:
            pass
    assert not gained, f"{role} gained permissions:\n" + "\n".join(gained)


def test_the_attempts_do_work_for_an_admin(db):
    """So the test above can fail: the same attempts made by an admin do change who holds what."""
    world = make_world("user")
    world.actor.is_superuser = True
    world.actor.save()
    api = APIClient()
    api.force_login(world.actor)
    web = Client()
    web.force_login(world.actor)
    landed = []
    expected = {"api_bind_cluster_owner_to_self", "admin_mint_token_for_root", "admin_set_roots_password",
                "api_join_a_powerful_group"}
    for name in sorted(expected):
        try:
            with transaction.atomic():
                before = (ClusterRoleBinding.objects.filter(user=world.actor).count(),
                          ApiToken.objects.filter(user=world.root).count(),
                          world.admin_group.members.filter(pk=world.actor.pk).exists())
                world.root.refresh_from_db()
                password_before = world.root.password
                ATTEMPTS[name](world, api, web)
                world.root.refresh_from_db()
                after = (ClusterRoleBinding.objects.filter(user=world.actor).count(),
                         ApiToken.objects.filter(user=world.root).count(),
                         world.admin_group.members.filter(pk=world.actor.pk).exists())
                if after != before or world.root.password != password_before:
                    landed.append(name)
                raise _Undo
        except _Undo:
            pass
    assert set(landed) == expected
