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


# CIS scans (issue 11): a finished scan, a schedule and an alert rule in the tenant's cluster. Profiles and
# notifiers are global (profiles readable by every user, notifiers by those who manage them).
from notifiers.models import Notifier  # noqa: E402
from scans.models import Scan, ScanAlert, ScanProfile, ScanSchedule  # noqa: E402

GLOBAL_MODELS |= {ScanProfile, Notifier}


def _scan_schedule(t: Tenant) -> ScanSchedule:
    return ScanSchedule.objects.create(cluster=t.cluster, profile=ScanProfile.objects.get(name="cis-1.8-permissive"))


FACTORIES[Scan] = lambda t: Scan.objects.create(cluster=t.cluster, profile_name="cis-1.8-permissive",
                                                benchmark="cis-1.8", state="passed", total=1, passed=1)
FACTORIES[ScanSchedule] = _scan_schedule
FACTORIES[ScanAlert] = lambda t: ScanAlert.objects.create(
    schedule=_scan_schedule(t), notifier=Notifier.objects.create(name=f"{t.name}-alerts", kind="slack",
                                                                 slack_webhook_url="https://hooks.example.test/x"))


# Backups: each tenant's cluster has its own S3 target (an endpoint nothing answers on), a Ready
# snapshot on it, and a finished restore of an older one.
import hashlib  # noqa: E402

from backups.models import BackupTarget, Restore, Snapshot  # noqa: E402

UNREACHABLE_S3 = "http://127.0.0.1:9"


def target_keys(t: Tenant) -> tuple[str, str]:
    """The access and secret key of a tenant's target: long and unlike anything else on a page."""
    return f"AKIA{t.name.upper()}ACCESS7Q2XZ9", f"{t.name}-secret-key-Zq8wVx3mNb5tYr7Lk2Hp"


def backup_target(t: Tenant) -> BackupTarget:
    access_key, secret_key = target_keys(t)
    return BackupTarget.objects.get_or_create(
        cluster=t.cluster, name=f"{t.name}-s3",
        defaults={"endpoint": UNREACHABLE_S3, "bucket": f"{t.name}-bucket", "folder": "snapshots",
                  "access_key": access_key, "secret_key": secret_key})[0]


def ready_snapshot(t: Tenant, name: str = "") -> Snapshot:
    """A Ready snapshot of the tenant's cluster in its target, complete (size and SHA-256): one a restore accepts."""
    name = name or f"{t.name}-cluster-manual-20240102-030405"
    return Snapshot.objects.get_or_create(
        cluster=t.cluster, name=name,
        defaults={"state": Snapshot.State.READY, "target": backup_target(t), "node": f"{t.name}-etcd-1",
                  "s3_location": f"s3://{t.name}-bucket/snapshots/{name}", "kubernetes_version": "v1.15.11",
                  "size": 4096, "sha256": hashlib.sha256(name.encode()).hexdigest()})[0]


def finished_restore(t: Tenant) -> Restore:
    snapshot = ready_snapshot(t, f"{t.name}-cluster-manual-20240101-000000")
    return Restore.objects.create(cluster=t.cluster, snapshot=snapshot, snapshot_name=snapshot.name,
                                  state=Restore.State.SUCCEEDED, report={"steps": ["verified", "restored"]})


FACTORIES[BackupTarget] = backup_target
FACTORIES[Snapshot] = ready_snapshot
FACTORIES[Restore] = finished_restore
