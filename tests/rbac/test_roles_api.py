"""Roles and bindings through the API: who may grant what, and no privilege escalation."""
from __future__ import annotations

import pytest

from portal.models import AuditEvent
from rbac.models import ClusterRoleBinding, GlobalRole, GlobalRoleBinding, ProjectRoleBinding, RoleTemplate
from tests.tenancy import make_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenants(db):
    return make_tenant("ta"), make_tenant("tb")


def test_owner_grants_member_on_own_cluster_and_it_is_audited(api, tenants, django_user_model):
    a, _ = tenants
    dave = django_user_model.objects.create_user("dave")
    api.force_login(a.owner)
    role = RoleTemplate.objects.get(name="cluster-member")
    response = api.post("/v3/clusterrolebindings/", {"cluster": a.cluster.pk, "role": role.pk, "user": dave.pk},
                        format="json")
    assert response.status_code == 201, response.content
    binding = ClusterRoleBinding.objects.get(pk=response.json()["id"])
    assert binding.created_by == a.owner
    assert AuditEvent.objects.filter(action="role_change", object_id=str(binding.pk), user=a.owner).exists()


def test_owner_cannot_grant_on_another_tenants_cluster(api, tenants, django_user_model):
    a, b = tenants
    api.force_login(a.owner)
    role = RoleTemplate.objects.get(name="cluster-owner")
    before = ClusterRoleBinding.objects.count()
    response = api.post("/v3/clusterrolebindings/", {"cluster": b.cluster.pk, "role": role.pk, "user": a.owner.pk},
                        format="json")
    assert response.status_code == 400
    assert "cluster" in response.json()["error"]["fields"]
    assert ClusterRoleBinding.objects.count() == before


def test_member_cannot_grant_roles(api, tenants):
    a, _ = tenants
    api.force_login(a.member)
    role = RoleTemplate.objects.get(name="project-owner")
    before = ProjectRoleBinding.objects.count()
    response = api.post("/v3/projectrolebindings/", {"project": a.project.pk, "role": role.pk, "user": a.member.pk},
                        format="json")
    assert response.status_code == 403, response.content
    assert "permission" in response.json()["error"]["message"]
    assert ProjectRoleBinding.objects.count() == before


def test_users_cannot_make_themselves_admin(api, tenants):
    a, _ = tenants
    api.force_login(a.owner)
    admin_role = GlobalRole.objects.get(name="admin")
    response = api.post("/v3/globalrolebindings/", {"role": admin_role.pk, "user": a.owner.pk}, format="json")
    assert response.status_code in (400, 403)
    assert not GlobalRoleBinding.objects.filter(role=admin_role, user=a.owner).exists()
    assert api.patch(f"/v3/globalroles/{admin_role.pk}/", {"permissions": []}, format="json").status_code == 403


def test_custom_role_with_unknown_permission_is_refused(admin_api):
    response = admin_api.post("/v3/globalroles/", {"name": "viewer", "permissions": ["cluster.view", "cluster.fly"]},
                              format="json")
    assert response.status_code == 400
    assert "cluster.fly" in response.json()["error"]["message"]
    assert not GlobalRole.objects.filter(name="viewer").exists()


def test_custom_global_role_granted_to_group(admin_api, api, tenants):
    a, b = tenants
    created = admin_api.post("/v3/globalroles/", {"name": "fleet-viewer", "permissions": ["cluster.view", "node.view"]},
                             format="json")
    assert created.status_code == 201, created.content
    api.force_login(a.member)
    assert api.get(f"/v3/clusters/{b.cluster.pk}/").status_code == 404
    grant = admin_api.post("/v3/globalrolebindings/", {"role": created.json()["id"], "group": a.group.pk},
                           format="json")
    assert grant.status_code == 201
    a.group.members.add(a.member)
    assert api.get(f"/v3/clusters/{b.cluster.pk}/").status_code == 200
    assert api.patch(f"/v3/clusters/{b.cluster.pk}/", {"description": "x"}, format="json").status_code == 403


def test_builtin_roles_are_protected(admin_api):
    role = GlobalRole.objects.get(name="user")
    assert admin_api.delete(f"/v3/globalroles/{role.pk}/").status_code == 403
    assert admin_api.patch(f"/v3/globalroles/{role.pk}/", {"permissions": ["*"]}, format="json").status_code == 400


def test_new_users_get_the_default_role(django_user_model):
    user = django_user_model.objects.create_user("newbie")
    assert GlobalRoleBinding.objects.filter(user=user, role__name="user").exists()


def test_me_shows_groups(api, tenants):
    a, _ = tenants
    api.force_login(a.owner)
    me = api.get("/v3/users/me/").json()
    assert me["username"] == "ta-owner" and me["groups"] == ["ta-admins"]


def test_api_root_lists_endpoints_to_signed_in_users(api, tenants):
    a, _ = tenants
    api.force_login(a.member)
    root = api.get("/v3/").json()
    assert {"clusters", "projects", "jobs", "auditlog", "clusterrolebindings"} <= set(root)
