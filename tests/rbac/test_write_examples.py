"""The writes that issue 8 found accepted, each tried again as it was reported: refused, nothing changed."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from clusters.models import ClusterConfigVersion, Project, Upgrade
from rbac.models import ClusterRoleBinding, GlobalRole, Group, ProjectRoleBinding, RoleTemplate
from tests.tenancy import make_tenant


@pytest.fixture
def tenants(db):
    a, b = make_tenant("ea"), make_tenant("eb")
    return a, b


@pytest.fixture
def straddler(tenants, make_user):
    """A cluster-member of cluster A who is read-only on one project of cluster B."""
    a, b = tenants
    user = make_user("straddler")
    ClusterRoleBinding.objects.create(cluster=a.cluster, role=RoleTemplate.objects.get(name="cluster-member"), user=user)
    ProjectRoleBinding.objects.create(project=b.project, role=RoleTemplate.objects.get(name="read-only"), user=user)
    return user


def _web(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_admin_refuses_a_project_in_a_cluster_where_one_is_only_read_only(tenants, straddler):
    a, b = tenants
    web = _web(straddler)
    assert web.get("/admin/clusters/project/add/").status_code == 200  # may add projects somewhere (cluster A)
    response = web.post("/admin/clusters/project/add/", {"cluster": b.cluster.pk, "name": "planted",
                                                        "description": "", "namespaces": "[]"})
    assert response.status_code == 403
    assert not Project.objects.filter(name="planted").exists()
    # ...while in cluster A, where they hold project.add, the same form works.
    response = web.post("/admin/clusters/project/add/", {"cluster": a.cluster.pk, "name": "legit",
                                                        "description": "", "namespaces": "[]"})
    assert response.status_code == 302, response.content[:500]
    assert Project.objects.filter(name="legit", cluster=a.cluster).exists()


def test_admin_refuses_moving_a_project_to_another_cluster(tenants, make_user):
    a, b = tenants
    owner_of_both = make_user("both")
    for cluster in (a.cluster, b.cluster):
        ClusterRoleBinding.objects.create(cluster=cluster, role=RoleTemplate.objects.get(name="cluster-member"),
                                          user=owner_of_both)
    ProjectRoleBinding.objects.create(project=a.project, role=RoleTemplate.objects.get(name="project-owner"),
                                      user=owner_of_both)
    web = _web(owner_of_both)
    response = web.post(f"/admin/clusters/project/{a.project.pk}/change/",
                        {"cluster": b.cluster.pk, "name": a.project.name, "description": "moved?", "namespaces": "[]"})
    assert response.status_code in (302, 403)  # the cluster is read-only on the change page
    assert Project.objects.get(pk=a.project.pk).cluster_id == a.cluster.pk
    # And the write rule itself refuses the move, whatever door it comes through: the project-owner
    # binding travels with the project and proves nothing about cluster B.
    from rbac import access

    moved = Project.objects.get(pk=a.project.pk)
    moved.cluster = b.cluster
    with pytest.raises(access.WriteRefused, match="move"):
        access.check_write(owner_of_both, "change", moved, before=Project.objects.get(pk=a.project.pk))


def test_api_lets_a_cluster_member_create_a_project_but_not_in_another_cluster(tenants, straddler):
    a, b = tenants
    api = _api(straddler)
    created = api.post("/v3/projects/", {"cluster": a.cluster.pk, "name": "team-x"}, format="json")
    assert created.status_code == 201, created.content
    refused = api.post("/v3/projects/", {"cluster": b.cluster.pk, "name": "planted"}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert not Project.objects.filter(name="planted").exists()


@pytest.fixture
def editor(tenants, make_user):
    """May change cluster A's config but not upgrade it (a custom cluster role)."""
    a, _ = tenants
    role = RoleTemplate.objects.create(name="config-editor", context="cluster",
                                       permissions=["cluster.view", "cluster.change"])
    user = make_user("editor")
    ClusterRoleBinding.objects.create(cluster=a.cluster, role=role, user=user)
    a.cluster.kind, a.cluster.kubernetes_version = "rke", "v1.15.11"
    a.cluster.save()
    return user


def _document(version: str) -> dict:
    from clusters import schema

    doc = schema.defaults()
    doc["kubernetes_version"] = version
    return {"document": doc}


def test_a_config_that_changes_the_version_needs_the_upgrade_permission(tenants, editor):
    a, _ = tenants
    api = _api(editor)
    before = ClusterConfigVersion.objects.filter(cluster=a.cluster).count()
    refused = api.put(f"/v3/clusters/{a.cluster.pk}/config/", _document("v1.16.8"), format="json")
    assert refused.status_code == 403, refused.content
    assert "upgrade" in refused.json()["error"]["message"]
    assert ClusterConfigVersion.objects.filter(cluster=a.cluster).count() == before
    assert not Upgrade.objects.filter(cluster=a.cluster).exists()
    assert api.post(f"/v3/clusters/{a.cluster.pk}/upgrade/", {"kubernetes_version": "v1.16.8"},
                    format="json").status_code == 403
    # The same edit without a version change is theirs to make.
    accepted = api.put(f"/v3/clusters/{a.cluster.pk}/config/", _document("v1.15.11"), format="json")
    assert accepted.status_code == 200, accepted.content
    assert ClusterConfigVersion.objects.filter(cluster=a.cluster).count() == before + 1


def test_admin_edit_as_yaml_refuses_an_upgrade_without_the_permission(tenants, editor):
    from clusters import schema

    a, _ = tenants
    doc = schema.defaults()
    doc["kubernetes_version"] = "v1.16.8"
    response = _web(editor).post(f"/admin/clusters/cluster/{a.cluster.pk}/config/",
                                 {"yaml": schema.to_yaml(doc), "comment": ""})
    assert response.status_code == 200
    assert "may not upgrade" in response.content.decode()
    assert not ClusterConfigVersion.objects.filter(cluster=a.cluster, document__kubernetes_version="v1.16.8").exists()
    assert not Upgrade.objects.filter(cluster=a.cluster).exists()


@pytest.mark.parametrize("binding", ["user", "cluster-member", "project-owner"])
def test_directory_writes_refused_to_ordinary_roles(tenants, make_user, binding):
    a, _ = tenants
    user = make_user("ordinary")  # holds the default global role "user"
    if binding == "cluster-member":
        ClusterRoleBinding.objects.create(cluster=a.cluster, role=RoleTemplate.objects.get(name=binding), user=user)
    elif binding == "project-owner":
        ProjectRoleBinding.objects.create(project=a.project, role=RoleTemplate.objects.get(name=binding), user=user)
    api = _api(user)
    counts = (GlobalRole.objects.count(), RoleTemplate.objects.count(), Group.objects.count())
    assert api.post("/v3/globalroles/", {"name": "x", "permissions": ["*"]}, format="json").status_code == 403
    assert api.post("/v3/roletemplates/", {"name": "x", "context": "cluster", "permissions": ["*"]},
                    format="json").status_code == 403
    assert api.post("/v3/groups/", {"name": "x", "members": [user.pk]}, format="json").status_code == 403
    assert (GlobalRole.objects.count(), RoleTemplate.objects.count(), Group.objects.count()) == counts


def test_a_project_owner_may_grant_only_project_roles_they_hold(tenants, make_user):
    a, _ = tenants
    owner = make_user("powner")
    ProjectRoleBinding.objects.create(project=a.project, role=RoleTemplate.objects.get(name="project-owner"), user=owner)
    wide = RoleTemplate.objects.create(name="project-plus", context="project", permissions=["project.*", "cluster.change"])
    api = _api(owner)
    ok = api.post("/v3/projectrolebindings/", {"project": a.project.pk, "role": RoleTemplate.objects.get(
        name="project-member").pk, "user": a.owner.pk}, format="json")
    assert ok.status_code == 201, ok.content
    refused = api.post("/v3/projectrolebindings/", {"project": a.project.pk, "role": wide.pk, "user": a.owner.pk},
                       format="json")
    assert refused.status_code == 403
    assert "cluster.change" in refused.json()["error"]["message"]
    assert not ProjectRoleBinding.objects.filter(role=wide).exists()
