"""Cluster config versions: validate, save with history, and start an upgrade when the version changes."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from clusters import schema
from clusters.models import Cluster, ClusterConfigVersion
from portal import audit
from rbac import access


def initial_document(cluster: Cluster) -> dict[str, Any]:
    doc = schema.defaults()
    doc["kubernetes_version"] = cluster.kubernetes_version
    if cluster.kind != Cluster.Kind.K3S:
        doc.pop("k3s_upgrade_strategy", None)
    return doc


def current_document(cluster: Cluster) -> dict[str, Any]:
    latest = cluster.config
    return latest.document if latest else initial_document(cluster)


def desired_version(cluster: Cluster) -> str:
    return current_document(cluster).get("kubernetes_version") or cluster.kubernetes_version


@transaction.atomic
def save_config(cluster: Cluster, document: dict[str, Any], *, user=None, source: str = "", comment: str = "",
                audit_it: bool = True) -> ClusterConfigVersion:
    """Store a validated document as the next version. Raises schema.ConfigError; nothing is saved then.

    A document equal to the one in force is no new version: the current one is returned as it is.
    """
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    previous = cluster.config
    document = schema.validate(document, kind=cluster.kind,
                               current_version=previous.document.get("kubernetes_version") if previous
                               else cluster.kubernetes_version, source=source)
    if previous is not None and previous.document == document:
        return previous
    number = (cluster.config_versions.aggregate(n=Max("version"))["n"] or 0) + 1
    version = ClusterConfigVersion.objects.create(
        cluster=cluster, version=number, document=document, source=source or schema.to_yaml(document),
        comment=comment, created_by=user if user is not None and user.is_authenticated else None,
    )
    if audit_it:
        before = previous.document if previous else {}
        audit.record("update", cluster, user=user, message=f"config version {number}" + (f": {comment}" if comment else ""),
                     changes=_flat_diff(before, document))
    return version


def save_yaml(cluster: Cluster, text: str, *, user=None, comment: str = "") -> ClusterConfigVersion:
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # browsers post CRLF; the YAML is kept as written
    return save_config(cluster, schema.parse_yaml(text), user=user, source=text, comment=comment)


def apply(cluster: Cluster, document_or_yaml: dict[str, Any] | str, *, user=None, comment: str = ""):
    """Save a new config and, if it asks for another Kubernetes version, start the upgrade; if its
    kubelet arguments (services.kubelet.extra_args) changed, start their rollout to the nodes.

    Returns (config version, upgrade or rollout job, or None). Admin "Edit as YAML", the API and
    restores all come through here.
    """
    access.require(user, "change", cluster)
    with transaction.atomic():
        before = desired_version(cluster)
        previous_document = current_document(cluster)
        if isinstance(document_or_yaml, str):
            version = save_yaml(cluster, document_or_yaml, user=user, comment=comment)
        else:
            version = save_config(cluster, document_or_yaml, user=user, comment=comment)
        job = None
        target = version.document["kubernetes_version"]
        version_changed = target != before and target != cluster.kubernetes_version
        args_before = _kubelet_args(previous_document)
        args_after = _kubelet_args(version.document)
        if args_after != args_before and cluster.kind in (Cluster.Kind.RKE, Cluster.Kind.K3S):
            from clusters.upgrades import UpgradeError, start_kubelet_args

            # New kubelet arguments reach the nodes as a rollout; it restarts kubelets, so it needs "upgrade".
            access.require(user, "upgrade", cluster)
            if version_changed:
                raise UpgradeError("Change kubernetes_version and services.kubelet.extra_args in two saves: the "
                                   "upgrade first, then the kubelet arguments.", "services.kubelet.extra_args")
            job = start_kubelet_args(cluster, args_after, user=user)
        if version_changed:
            from clusters.upgrades import start_upgrade

            # A new version is an upgrade, whichever door it came through; refusing rolls the config back.
            access.require(user, "upgrade", cluster)
            job = start_upgrade(cluster, target, user=user)
    return version, job


def _kubelet_args(document: dict[str, Any]) -> dict[str, Any]:
    return dict(((document.get("services") or {}).get("kubelet") or {}).get("extra_args") or {})


def _flat_diff(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> dict[str, list]:
    changes: dict[str, list] = {}
    for key in sorted(set(before) | set(after)):
        path = f"{prefix}.{key}" if prefix else key
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and path != "services.kubelet.extra_args":
            changes.update(_flat_diff(old, new, path))
        elif old != new:
            changes[path] = [old, new]
    return changes
