"""Import clusters and keep their inventory fresh: many clusters at once, bulk database writes."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from clusters import kube
from clusters.models import Cluster, Node
from portal import audit
from portal.jobs import NullReporter, Reporter

logger = logging.getLogger("corral.clusters")

NODE_FIELDS = [
    "uid", "roles", "kubelet_version", "os_image", "kernel_version", "container_runtime", "internal_ip", "ready",
    "unschedulable", "conditions", "capacity", "allocatable", "taints", "labels", "annotations",
    "created_in_cluster_at", "synced_at", "fingerprint",
]


def _map(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any, limit: int) -> str:
    """A field from the cluster cut to its column: the server is the importer's choice, not trusted."""
    return value[:limit] if isinstance(value, str) else ""


def node_from_json(cluster_id: int, raw: dict[str, Any], now: datetime) -> Node:
    meta, spec, status = _map(raw.get("metadata")), _map(raw.get("spec")), _map(raw.get("status"))
    info = _map(status.get("nodeInfo"))
    conditions = [
        {k: c.get(k) for k in ("type", "status", "reason", "message", "lastTransitionTime")}
        for c in _list(status.get("conditions")) if isinstance(c, dict)
    ]
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    internal_ip = next((_text(a.get("address"), 64) for a in _list(status.get("addresses"))
                        if isinstance(a, dict) and a.get("type") == "InternalIP"), "")
    created = meta.get("creationTimestamp")
    try:
        created = parse_datetime(created) if isinstance(created, str) else None
    except ValueError:
        created = None
    node = Node(
        cluster_id=cluster_id, name=_text(meta.get("name"), 253), uid=_text(meta.get("uid"), 64),
        roles=kube.node_roles(raw), kubelet_version=_text(info.get("kubeletVersion"), 64),
        os_image=_text(info.get("osImage"), 200), kernel_version=_text(info.get("kernelVersion"), 100),
        container_runtime=_text(info.get("containerRuntimeVersion"), 100),
        internal_ip=internal_ip, ready=ready, unschedulable=bool(spec.get("unschedulable")), conditions=conditions,
        capacity=_map(status.get("capacity")), allocatable=_map(status.get("allocatable")),
        taints=_list(spec.get("taints")), labels=_map(meta.get("labels")), annotations=_map(meta.get("annotations")),
        created_in_cluster_at=created, synced_at=now,
    )
    node.fingerprint = fingerprint(node)
    return node


def fingerprint(node: Node) -> str:
    """A digest of everything a sync writes, so a node that did not change costs no write."""
    values = [getattr(node, f) for f in NODE_FIELDS if f not in ("synced_at", "fingerprint")]
    return hashlib.blake2b(json.dumps(values, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


# ---------------------------------------------------------------------------------------------- import

def may_skip_tls_verify(user) -> bool:
    """Only admins may import a cluster whose server certificate is not checked."""
    from rbac import access

    return user is not None and access.grants_for(user).is_admin()


INSECURE_REFUSED = ("Only admins may skip TLS verification: without it anyone between Corral and the cluster "
                    "could read the credentials. Add the cluster's CA to the kubeconfig instead.")


def check_kubeconfig(kubeconfig: str, *, allow_insecure: bool = False) -> kube.ClusterView:
    """Parse and try a kubeconfig; raises KubeconfigError/ClusterError with the reason in words.

    ``allow_insecure`` lets ``insecure-skip-tls-verify`` through; callers pass it only for an admin who
    asked for it explicitly (see :func:`may_skip_tls_verify`).
    """
    return kube.look(kubeconfig, allow_insecure=allow_insecure)


def audit_insecure_tls(cluster: Cluster, user, server: str) -> None:
    """The audit row an admin's decision to skip TLS verification leaves (call inside the write's transaction)."""
    audit.record("update", cluster, user=user, changes={"insecure_tls": [False, True]},
                 message=f"TLS verification is off for this cluster: {server} is reached without checking "
                         "its certificate (allowed by an admin)")


@transaction.atomic
def server_taken(server: str, user, *, exclude_pk: int | None = None) -> str | None:
    """Why a kubeconfig's API server cannot be imported again, or None: one cluster, one record.

    The existing cluster is named only to someone who may see it.
    """
    from rbac import access

    existing = Cluster.objects.filter(api_server=server).exclude(pk=exclude_pk).first()
    if existing is None:
        return None
    if user is not None and access.can(user, "view", existing):
        return f"This API server ({server}) is already imported as cluster {existing.name!r}."
    return f"This API server ({server}) is already imported into Corral; ask its owners for access."


def import_cluster(*, name: str, kubeconfig: str, user=None, description: str = "",
                   view: kube.ClusterView | None = None, allow_insecure_tls: bool = False) -> Cluster:
    """Save a cluster whose kubeconfig was checked, with its first config version and inventory.

    A kubeconfig that skips TLS verification needs ``allow_insecure_tls`` and an admin as ``user``;
    the cluster keeps the flag so its syncs accept it, and an audit row says so.
    """
    from clusters import config as cluster_config
    from clusters.services import grant_owner
    from rbac import access

    access.check_write(user, "add", Cluster(name=name, description=description))
    if allow_insecure_tls and not may_skip_tls_verify(user):
        raise kube.KubeconfigError(INSECURE_REFUSED)
    view = view or check_kubeconfig(kubeconfig, allow_insecure=allow_insecure_tls)
    if view.insecure_tls and not may_skip_tls_verify(user):
        raise kube.KubeconfigError(INSECURE_REFUSED)
    taken = server_taken(view.server, user)
    if taken:
        raise kube.KubeconfigError(taken)
    now = timezone.now()
    cluster = Cluster.objects.create(
        name=name, description=description, kubeconfig=kubeconfig, kind=view.kind, state=Cluster.State.ACTIVE,
        kubernetes_version=view.git_version, api_server=view.server, last_synced_at=now, node_count=len(view.nodes),
        created_by=user if user is not None and user.is_authenticated else None, insecure_tls=view.insecure_tls,
    )
    Node.objects.bulk_create([node_from_json(cluster.pk, n, now) for n in view.nodes])
    cluster_config.save_config(cluster, cluster_config.initial_document(cluster), user=user,
                               comment="imported", audit_it=False)
    grant_owner(cluster, user)
    audit.record("create", cluster, user=user, changes=audit.diff(None, audit.snapshot(cluster)),
                 message=f"imported {view.kind} cluster {view.git_version} with {len(view.nodes)} nodes")
    if view.insecure_tls:
        audit_insecure_tls(cluster, user, view.server)
    from backups.hooks import snapshot_after_import

    snapshot_after_import(cluster)
    return cluster


def replace_kubeconfig(cluster: Cluster, kubeconfig: str, *, user=None, allow_insecure_tls: bool = False) -> Cluster:
    """Swap in new credentials after checking them; the cluster's state follows what they show.

    Skipping TLS verification is decided again for every new kubeconfig (admins only, audited).
    """
    from rbac import access

    access.check_write(user, "change", cluster, before=cluster)
    if allow_insecure_tls and not may_skip_tls_verify(user):
        raise kube.KubeconfigError(INSECURE_REFUSED)
    view = check_kubeconfig(kubeconfig, allow_insecure=allow_insecure_tls)
    with transaction.atomic():
        cluster.kubeconfig = kubeconfig
        cluster.api_server = view.server
        cluster.kubernetes_version = view.git_version
        cluster.insecure_tls = view.insecure_tls
        if cluster.state in SYNC_OWNED_STATES:
            cluster.state, cluster.state_reason = Cluster.State.ACTIVE, ""
        cluster.save(update_fields=["kubeconfig", "api_server", "kubernetes_version", "state", "state_reason",
                                    "insecure_tls", "updated_at"])
        audit.record("update", cluster, user=user, changes={"kubeconfig": ["••••••••", "(secret changed)"]},
                     message="kubeconfig replaced")
        if view.insecure_tls:
            audit_insecure_tls(cluster, user, view.server)
    return cluster


# ------------------------------------------------------------------------------------------------ sync

@dataclass
class SyncOutcome:
    cluster_id: int
    view: kube.ClusterView | None = None
    error: kube.ClusterError | kube.KubeconfigError | None = None
    seconds: float = 0.0


@dataclass
class SyncReport:
    clusters: int = 0
    reachable: int = 0
    unavailable: list[str] = field(default_factory=list)
    nodes_seen: int = 0
    nodes_written: int = 0
    nodes_deleted: int = 0
    fetch_seconds: float = 0.0
    write_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _fetch(cluster_id: int, kubeconfig: str, insecure_tls: bool = False) -> SyncOutcome:
    started = time.monotonic()
    try:
        view = kube.look(kubeconfig, allow_insecure=insecure_tls, timeout=(kube.CONNECT_TIMEOUT, kube.READ_TIMEOUT))
        return SyncOutcome(cluster_id, view=view, seconds=time.monotonic() - started)
    except (kube.ClusterError, kube.KubeconfigError) as exc:
        error = exc if isinstance(exc, kube.ClusterError) else kube.ClusterError(str(exc))
        return SyncOutcome(cluster_id, error=error, seconds=time.monotonic() - started)


# States a sync may change; upgrades and restores own the state while they run.
SYNC_OWNED_STATES = {Cluster.State.ACTIVE, Cluster.State.PROVISIONING, Cluster.State.UNAVAILABLE, Cluster.State.ERROR}


def sync_clusters(cluster_ids: list[int], reporter: Reporter | None = None, threads: int | None = None) -> SyncReport:
    """Read nodes and versions of many clusters in parallel, then write them in bulk."""
    reporter = reporter or NullReporter()
    report = SyncReport()
    clusters = list(Cluster.objects.filter(pk__in=cluster_ids).only("pk", "name", "kubeconfig", "state",
                                                                    "insecure_tls"))
    report.clusters = len(clusters)
    started = time.monotonic()
    threads = threads or int(getattr(settings, "CLUSTER_SYNC_THREADS", 16))
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(clusters) or 1))) as pool:
        outcomes = list(pool.map(lambda c: _fetch(c.pk, c.kubeconfig, c.insecure_tls), clusters))
    report.fetch_seconds = round(time.monotonic() - started, 3)
    reporter.progress(60, f"read {len(clusters)} clusters in {report.fetch_seconds} s")

    started = time.monotonic()
    now = timezone.now()
    by_id = {c.pk: c for c in clusters}
    fresh_nodes: list[Node] = []
    changed: list[Cluster] = []
    reachable_ids: list[int] = []
    for outcome in outcomes:
        cluster = by_id[outcome.cluster_id]
        if outcome.view is not None:
            report.reachable += 1
            reachable_ids.append(cluster.pk)
            nodes = [node_from_json(cluster.pk, n, now) for n in outcome.view.nodes]
            fresh_nodes.extend(nodes)
            cluster.kubernetes_version = outcome.view.git_version
            cluster.node_count = len(nodes)
            cluster.last_synced_at = now
            if cluster.state in SYNC_OWNED_STATES:
                if cluster.state != Cluster.State.ACTIVE:
                    reporter.log(f"{cluster.name}: reachable again, Active")
                cluster.state, cluster.state_reason = Cluster.State.ACTIVE, ""
        else:
            report.unavailable.append(cluster.name)
            reason = outcome.error.reason if isinstance(outcome.error, kube.ClusterError) else str(outcome.error)
            # Unreachable clusters come back by themselves; refused credentials need someone to act.
            unreachable = isinstance(outcome.error, kube.ClusterError) and outcome.error.unreachable
            new_state = Cluster.State.UNAVAILABLE if unreachable else Cluster.State.ERROR
            if cluster.state in SYNC_OWNED_STATES:
                if cluster.state != new_state:
                    reporter.log(f"{cluster.name}: {new_state.label.lower()}: {reason}", "warning")
                cluster.state = new_state
            cluster.state_reason = reason
        changed.append(cluster)
    known = {(cid, name): (pk, digest) for pk, cid, name, digest in
             Node.objects.filter(cluster_id__in=reachable_ids).values_list("pk", "cluster_id", "name", "fingerprint")}
    seen = {(n.cluster_id, n.name) for n in fresh_nodes}
    to_write = [n for n in fresh_nodes if known.get((n.cluster_id, n.name), (None, None))[1] != n.fingerprint]
    gone = [pk for key, (pk, _digest) in known.items() if key not in seen]
    with transaction.atomic():
        Cluster.objects.bulk_update(
            changed, ["state", "state_reason", "kubernetes_version", "node_count", "last_synced_at"], batch_size=500
        )
        if to_write:
            Node.objects.bulk_create(
                to_write, batch_size=1000, update_conflicts=True, unique_fields=["cluster", "name"],
                update_fields=NODE_FIELDS,
            )
        if gone:
            report.nodes_deleted, _ = Node.objects.filter(pk__in=gone).delete()
    report.nodes_seen = len(fresh_nodes)
    report.nodes_written = len(to_write)
    report.write_seconds = round(time.monotonic() - started, 3)
    return report
