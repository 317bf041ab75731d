"""Two tenants, and a factory per model that makes one object inside a tenant.

The generated isolation tests walk every API endpoint and admin page; a model with no
factory here and no entry in GLOBAL_MODELS fails them, so new features cannot forget.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from clusters.models import Cluster, Node, Project
from portal.models import ApiToken, AuditEvent, Job, SSOProvider, SSOSettings
from rbac.models import (
    ClusterRoleBinding,
    GlobalRole,
    GlobalRoleBinding,
    Group,
    ProjectRoleBinding,
    RoleTemplate,
)

User = get_user_model()

# Directory data every signed-in user may read (roles, groups, users) or that is admin-only
# (global role bindings); tenancy tests check these by their own rules, not by tenant.
GLOBAL_MODELS = {GlobalRole, RoleTemplate, Group, User, GlobalRoleBinding, SSOProvider, SSOSettings}


def is_admin_only(model_admin) -> bool:
    """Third-party admin pages (accounts, RQ dashboard) that only Corral admins may open."""
    from portal.admin import AdminOnlyMixin

    return isinstance(model_admin, AdminOnlyMixin)


@dataclass
class Tenant:
    name: str
    owner: Any  # cluster-owner through a group binding
    member: Any  # project-member through a user binding
    group: Group
    cluster: Cluster
    project: Project


def make_tenant(name: str) -> Tenant:
    owner = User.objects.create_user(f"{name}-owner", password="pw-123456")
    member = User.objects.create_user(f"{name}-member", password="pw-123456")
    group = Group.objects.create(name=f"{name}-admins")
    group.members.add(owner)
    cluster = Cluster.objects.create(name=f"{name}-cluster", kubeconfig="kubeconfig", state="active")
    project = Project.objects.create(cluster=cluster, name=f"{name}-project")
    ClusterRoleBinding.objects.create(cluster=cluster, role=RoleTemplate.objects.get(name="cluster-owner"), group=group)
    ProjectRoleBinding.objects.create(project=project, role=RoleTemplate.objects.get(name="project-member"), user=member)
    return Tenant(name, owner, member, group, cluster, project)


FACTORIES: dict[type, Callable[[Tenant], Any]] = {
    Cluster: lambda t: t.cluster,
    Project: lambda t: t.project,
    ClusterRoleBinding: lambda t: ClusterRoleBinding.objects.filter(cluster=t.cluster).first(),
    ProjectRoleBinding: lambda t: ProjectRoleBinding.objects.filter(project=t.project).first(),
    Job: lambda t: Job.objects.create(kind="portal.diagnose", cluster=t.cluster, created_by=t.owner,
                                      target_repr=t.cluster.name),
    AuditEvent: lambda t: AuditEvent.objects.create(action="update", cluster=t.cluster, user=t.owner,
                                                    object_repr=t.cluster.name),
    ApiToken: lambda t: ApiToken.issue(t.owner, description=f"{t.name} token")[0],
    Node: lambda t: Node.objects.create(cluster=t.cluster, name=f"{t.name}-node-1", roles=["worker"], ready=True),
}


def factory(model: type) -> Callable:
    """Apps' tests register factories for their models: ``@factory(Node)``."""

    def wrap(fn: Callable[[Tenant], Any]) -> Callable[[Tenant], Any]:
        FACTORIES[model] = fn
        return fn

    return wrap


# Upgrades (issue 5): a paused upgrade with one node, in the tenant's cluster.
from clusters.models import NodeUpgrade, Upgrade  # noqa: E402

FACTORIES[Upgrade] = lambda t: NodeUpgrade.objects.create(
    upgrade=Upgrade.objects.create(cluster=t.cluster, from_version="v1.15.11", to_version="v1.16.8",
                                   state=Upgrade.State.PAUSED, reason="test"),
    node_name=f"{t.name}-worker-1", role="worker").upgrade
