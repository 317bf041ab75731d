"""The world the generated write tests run in, and their oracle: the permission table itself.

Two tenants (A and B, from tests/tenancy.py). The actor holds exactly one built-in role:
a global one (user-base, user, restricted-admin), a cluster role on cluster A, or a project
role on project A1; scoped actors also hold the default global role ``user``, as every new
user does. What the actor may do is read from the built-in role table in
``rbac/permissions.py`` with :func:`rbac.permissions.allows` — not from ``rbac.access`` — so
the tests check the permission layer against the table, not against itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model

from clusters.models import Cluster, Project
from portal.models import ApiToken, Job
from rbac.models import (
    ClusterRoleBinding,
    GlobalRole,
    GlobalRoleBinding,
    Group,
    ProjectRoleBinding,
    RoleTemplate,
)
from rbac.permissions import BUILTIN_GLOBAL_ROLES, BUILTIN_ROLE_TEMPLATES, CLUSTER_SCOPED, allows
from tests.tenancy import Tenant, make_tenant

User = get_user_model()
# What a cluster or project binding can reach (the audit log has a cluster too).
SCOPED = set(CLUSTER_SCOPED) | {"auditlog"}

# Each built-in role and where it is bound.
ROLES: dict[str, str] = {
    "user-base": "global",
    "user": "global",
    "restricted-admin": "global",
    "cluster-member": "cluster",
    "cluster-owner": "cluster",
    "project-owner": "project",
    "project-member": "project",
    "read-only": "project",
}
# The roles above, and the global admin role: the admin tests also run every case as an admin, whom
# the table allows everything, so that each case shows it can succeed (a refusal-only case proves little).
KINDS: dict[str, str] = {**ROLES, "admin": "global"}


def table_perms(role: str) -> set[str]:
    if role in BUILTIN_GLOBAL_ROLES:
        return set(BUILTIN_GLOBAL_ROLES[role][1])
    return set(BUILTIN_ROLE_TEMPLATES[role][2])


@dataclass
class World:
    role: str
    a: Tenant
    b: Tenant
    actor: Any
    root: Any  # a superuser: the most powerful account, the prize of every escalation
    custom_global: GlobalRole  # a harmless custom global role ("cluster.view")
    custom_template: RoleTemplate  # a harmless custom cluster role template ("cluster.view")
    admin_group: Group  # a group bound to the global admin role
    extra: dict[str, Any] = field(default_factory=dict)

    # --- the oracle ---------------------------------------------------------------------------------
    def held(self, cluster: Cluster | None = None, project: Project | None = None) -> set[str]:
        """What the table says the actor holds on an object in ``cluster`` / ``project`` (None: global)."""
        kind = KINDS[self.role]
        perms = table_perms(self.role) if kind == "global" else table_perms("user")
        if kind == "cluster" and cluster is not None and cluster.pk == self.a.cluster.pk:
            perms |= table_perms(self.role)
        if kind == "project" and project is not None and project.pk == self.a.project.pk:
            perms |= table_perms(self.role)
        return perms

    def may(self, perm: str, cluster: Cluster | None = None, project: Project | None = None) -> bool:
        return allows(self.held(cluster, project), perm)

    def sees_cluster(self, cluster: Cluster) -> bool:
        """Holding any role in one of a cluster's projects shows the cluster (SPEC §6)."""
        return self.may("cluster.view", cluster) or (KINDS[self.role] == "project" and cluster.pk == self.a.cluster.pk)

    def may_grant(self, role_perms: list[str], cluster: Cluster | None = None, project: Project | None = None) -> bool:
        """Kubernetes' bind/escalate rule, from the table: every permission the grant gives is held there."""
        from rbac.access import expand

        held = self.held(cluster, project)
        wanted = expand(role_perms)
        if cluster is not None:  # a scoped grant gives only what reaches inside a cluster
            wanted = {p for p in wanted if p.split(".")[0] in SCOPED}
        return all(allows(held, p) for p in wanted)


def make_world(role: str) -> World:
    a, b = make_tenant("wa"), make_tenant("wb")
    # Cluster A is an rke cluster that can be upgraded, and has a node.
    Cluster.objects.filter(pk=a.cluster.pk).update(kind="rke", kubernetes_version="v1.15.11")
    a.cluster.refresh_from_db()
    actor = User.objects.create_user("actor", "actor@example.com", "pw-actor-123")
    root = User.objects.create_superuser("root", "root@example.com", "pw-root-123")
    GlobalRoleBinding.objects.filter(user=actor).delete()
    kind = KINDS[role]
    if kind == "global":
        GlobalRoleBinding.objects.create(role=GlobalRole.objects.get(name=role), user=actor)
    else:
        GlobalRoleBinding.objects.create(role=GlobalRole.objects.get(name="user"), user=actor)
        template = RoleTemplate.objects.get(name=role)
        if kind == "cluster":
            ClusterRoleBinding.objects.create(cluster=a.cluster, role=template, user=actor)
        else:
            ProjectRoleBinding.objects.create(project=a.project, role=template, user=actor)
    custom_global = GlobalRole.objects.create(name="viewer", permissions=["cluster.view"])
    custom_template = RoleTemplate.objects.create(name="cluster-viewer", context="cluster", permissions=["cluster.view"])
    admin_group = Group.objects.create(name="platform-admins")
    admin_group.members.add(root)
    GlobalRoleBinding.objects.create(role=GlobalRole.objects.get(name="admin"), group=admin_group)
    return World(role, a, b, actor, root, custom_global, custom_template, admin_group)


def grants_snapshot(user) -> tuple:
    """What a user may effectively do, computed afresh from the database: compared before and after an attempt.

    Per scope (global, each cluster, each project) the expanded set of permissions that apply
    there, so re-binding a role one already holds in effect is no gain, and any new power is.
    """
    from rbac.access import _compute_grants, expand

    fresh = User.objects.get(pk=user.pk)
    g = _compute_grants(fresh)
    everywhere = expand(g.global_perms)
    effective = {"global": frozenset(everywhere)}
    for cluster_id in Cluster.objects.values_list("pk", flat=True):
        effective[f"cluster {cluster_id}"] = frozenset(everywhere | expand(g.clusters.get(cluster_id, ())))
    for project_id, cluster_id in Project.objects.values_list("pk", "cluster_id"):
        effective[f"project {project_id}"] = frozenset(
            everywhere | expand(g.clusters.get(cluster_id, ())) | expand(g.projects.get(project_id, ())))
    visible = frozenset(set(g.project_cluster.values()) | {
        int(scope.split()[1]) for scope, perms in effective.items() if scope.startswith("cluster ") and "cluster.view" in perms})
    return fresh.is_superuser, fresh.is_active, visible, tuple(sorted(effective.items()))


def queued_job(world: World, status: str = "queued") -> Job:
    return Job.objects.create(kind="portal.diagnose", cluster=world.a.cluster, created_by=world.a.owner,
                              target_repr=world.a.cluster.name, status=status)


def own_token(world: World) -> ApiToken:
    return ApiToken.issue(world.actor, description="mine")[0]


# --- backups ------------------------------------------------------------------------------------------

def fleet_target(world: World):
    """A fleet-wide backup target (no cluster): managed by global roles only."""
    from backups.models import BackupTarget
    from tests.tenancy import UNREACHABLE_S3

    return BackupTarget.objects.create(name="fleet-s3", endpoint=UNREACHABLE_S3, bucket="fleet-bucket",
                                       access_key="AKIAFLEETACCESSKEY01", secret_key="fleet-secret-key-0123456789")


def deletion_queued(snapshot) -> bool:
    """A backups.delete job was queued for ``snapshot`` (the job, not the request, removes its copies)."""
    return any(snapshot.pk in (job.params or {}).get("snapshot_ids", [])
               for job in Job.objects.filter(kind="backups.delete"))
