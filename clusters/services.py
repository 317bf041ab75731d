"""Cluster operations shared by admin, API and jobs."""
from __future__ import annotations

from django.db import transaction

from clusters import config as cluster_config
from clusters.models import Cluster
from portal import audit, jobs
from rbac import access


class UpgradeRefused(Exception):
    """The cluster cannot be upgraded now (wrong kind, already upgrading, same version)."""


def grant_owner(cluster: Cluster, user) -> None:
    """The user who adds a cluster owns it, so they can see what they made."""
    from rbac.models import ClusterRoleBinding, RoleTemplate

    if user is None or not user.is_authenticated:
        return
    role = RoleTemplate.objects.get(name="cluster-owner")
    ClusterRoleBinding.objects.get_or_create(cluster=cluster, role=role, user=user, defaults={"created_by": user})


@transaction.atomic
def create_cluster(*, user, **fields) -> Cluster:
    """Create a cluster record without contacting it (fixtures, the simulator's own fleets)."""
    cluster = Cluster.objects.create(created_by=user if user and user.is_authenticated else None, **fields)
    grant_owner(cluster, user)
    audit.record("create", cluster, user=user, changes=audit.diff(None, audit.snapshot(cluster)))
    return cluster


def request_sync(cluster: Cluster, *, user=None):
    """Queue an inventory refresh of one cluster (or return the one already queued or running)."""
    from clusters.jobs import SyncRunner
    from portal.models import Job

    access.require(user, "sync", cluster)
    active = Job.objects.filter(kind=SyncRunner.kind, cluster=cluster, status__in=Job.ACTIVE).first()
    if active is not None:
        return active
    with transaction.atomic():
        audit.record("sync", cluster, user=user)
        return jobs.enqueue(SyncRunner.kind, target=cluster, user=user)


def request_upgrade(cluster: Cluster, *, kubernetes_version: str, user=None, mode: str | None = None):
    """Change the config's kubernetes_version (and mode, if given); the config change starts the upgrade job."""
    from clusters.upgrades import active_upgrade, start_upgrade

    access.require(user, "upgrade", cluster)
    if cluster.kind not in (Cluster.Kind.RKE, Cluster.Kind.K3S):
        raise UpgradeRefused(f"{cluster.get_kind_display()} clusters are upgraded outside Corral.")
    if active_upgrade(cluster) is not None or cluster.state == Cluster.State.UPGRADING:
        raise UpgradeRefused("The cluster is already upgrading; resume or cancel that upgrade first.")
    if kubernetes_version == cluster.kubernetes_version:
        raise UpgradeRefused(f"The cluster already runs {kubernetes_version}.")
    if cluster_config.desired_version(cluster) == kubernetes_version and not mode:
        # The config already asks for it (an upgrade to it was cancelled or failed): start again, no new version.
        return start_upgrade(cluster, kubernetes_version, user=user)
    document = dict(cluster_config.current_document(cluster))
    document["kubernetes_version"] = kubernetes_version
    if mode:
        document["upgrade_strategy"] = {**document.get("upgrade_strategy", {}), "mode": mode}
    _version, job = cluster_config.apply(cluster, document, user=user, comment=f"upgrade to {kubernetes_version}")
    if job is None:
        raise UpgradeRefused("No upgrade was started: the config already asks for this version.")
    return job
