"""Cluster domain logic shared by admin, API and jobs."""
from __future__ import annotations

from django.db import transaction

from clusters.models import Cluster
from portal import audit


def grant_owner(cluster: Cluster, user) -> None:
    """The user who adds a cluster owns it, so they can see what they made."""
    from rbac.models import ClusterRoleBinding, RoleTemplate

    if user is None or not user.is_authenticated:
        return
    role = RoleTemplate.objects.get(name="cluster-owner")
    ClusterRoleBinding.objects.get_or_create(cluster=cluster, role=role, user=user, defaults={"created_by": user})


@transaction.atomic
def create_cluster(*, user, **fields) -> Cluster:
    cluster = Cluster.objects.create(created_by=user if user and user.is_authenticated else None, **fields)
    grant_owner(cluster, user)
    audit.record("create", cluster, user=user, changes=audit.diff(None, audit.snapshot(cluster)))
    return cluster
