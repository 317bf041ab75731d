"""Zero-downtime Kubernetes upgrades: the service functions admin, API and config call.

    job = start_upgrade(cluster, "v1.16.8", user=request.user)          # returns the portal Job
    job = start_kubelet_args(cluster, {"max-pods": "250"}, user=...)    # same walk, node-config image
    resume_upgrade(upgrade, user=request.user)                          # a paused one continues
    cancel_upgrade(upgrade, user=request.user)                          # stops after in-flight nodes

The work happens in ``clusters.upgrade`` / ``clusters.kubelet_args`` jobs (see ``runners.py``):
``rke.py`` walks Corral's batches (rke clusters, and kubelet arguments anywhere), ``k3s.py`` writes
k3s's server/agent Plans; both change nodes only through ``clusters.nodeops`` (SUC Plans).
"""
from __future__ import annotations

import re

from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster, Upgrade
from clusters.schema import ConfigError
from clusters.upgrades.planning import batch_size, plan_rke
from portal import audit, jobs
from portal.jobs.control import JobStateError, is_resumable
from portal.models import Job
from rbac import access

__all__ = [
    "UpgradeError", "active_upgrade", "batch_size", "cancel_upgrade", "cancellable", "plan_rke", "resumable",
    "resume_upgrade", "start_kubelet_args", "start_upgrade",
]

MODES = ("rolling", "parallel")
UPGRADABLE = (Cluster.Kind.RKE, Cluster.Kind.K3S)
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:\+k3s(\d+))?")


class UpgradeError(ConfigError):
    """The upgrade cannot be started, resumed or cancelled; the message says why.

    A config error naming ``kubernetes_version``: whoever saves a config through
    ``config.apply`` already turns it into a 400 on that field, and nothing is saved.
    """

    def __init__(self, message: str, field: str = "kubernetes_version"):
        super().__init__([(field, None, message)])
        self.message = message

    def __str__(self) -> str:
        return self.message


def resumable(upgrade: Upgrade) -> bool:
    """Paused (or its worker was lost): its job can run again and continue."""
    job = upgrade.job
    return (upgrade.state not in (Upgrade.State.SUCCEEDED, Upgrade.State.CANCELLED) and job is not None
            and is_resumable(job))


def cancellable(upgrade: Upgrade) -> bool:
    return upgrade.state in (Upgrade.State.RUNNING, Upgrade.State.PAUSED)


def _version_key(version: str) -> tuple[int, ...] | None:
    match = _VERSION.match(version or "")
    return tuple(int(g or 0) for g in match.groups()) if match else None


def _user(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def active_upgrade(cluster: Cluster) -> Upgrade | None:
    """The cluster's running or paused upgrade, if any."""
    return cluster.upgrades.filter(state__in=(Upgrade.State.RUNNING, Upgrade.State.PAUSED)).first()


@transaction.atomic
def start_upgrade(cluster: Cluster, target: str, *, user=None, mode: str | None = None) -> Job:
    """Record an upgrade of ``cluster`` to ``target`` and queue its job; returns the Job.

    The strategy (batches, drain, timeouts; k3s concurrency and drain) is the one in the
    cluster's current config, copied onto the Upgrade so later config edits do not change
    an upgrade under way. ``mode`` overrides the config's upgrade_strategy.mode.
    Raises UpgradeError when the cluster cannot be upgraded to ``target`` now.
    """
    from clusters import config, schema
    from clusters.upgrades.runners import UpgradeRunner

    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    access.require(user, "upgrade", cluster)
    if cluster.kind not in UPGRADABLE:
        raise UpgradeError(f"{cluster.name} is an imported cluster; its Kubernetes is upgraded outside Corral.")
    target = (target or "").strip()
    supported = schema.SUPPORTED_VERSIONS.get(cluster.kind, [])
    if target not in supported:
        raise UpgradeError(f"{target or 'An empty version'} is not a supported {cluster.kind} version; "
                           f"choose one of {', '.join(supported)}.")
    current, wanted = _version_key(cluster.kubernetes_version), _version_key(target)
    if current and wanted and wanted < current:
        raise UpgradeError(f"{cluster.name} runs {cluster.kubernetes_version}; going back to {target} is a "
                           "downgrade, which needs a restore of a snapshot, not an upgrade.")
    _refuse_if_busy(cluster)
    document = config.current_document(cluster)
    strategy = dict(document.get("upgrade_strategy") or schema.defaults()["upgrade_strategy"])
    if cluster.kind == Cluster.Kind.K3S:
        strategy["k3s"] = dict(document.get("k3s_upgrade_strategy") or schema.defaults()["k3s_upgrade_strategy"])
    mode = _mode(mode, strategy, "kubernetes_version")
    return _queue_run(
        cluster, UpgradeRunner.kind, user=user, mode=mode, strategy=strategy, to_version=target,
        state_reason=f"Upgrade to {target} ({mode}) queued",
        changes={"kubernetes_version": [cluster.kubernetes_version, target]},
        message=f"upgrade {cluster.kubernetes_version} → {target} ({mode})",
    )


def _mode(mode: str | None, strategy: dict, field: str) -> str:
    """The run's mode (the request's, else the config's), written into the strategy it keeps."""
    mode = mode or strategy.get("mode") or "rolling"
    if mode not in MODES:
        raise UpgradeError(f'mode must be "rolling" or "parallel", not {mode!r}.', field)
    strategy["mode"] = mode
    return mode


def _queue_run(cluster: Cluster, runner_kind: str, *, user, mode: str, strategy: dict, to_version: str,
               state_reason: str, changes: dict, message: str, kind: str | None = None,
               params: dict | None = None) -> Job:
    """Record the Upgrade row, queue its job, mark the cluster and audit it: the same for every node walk."""
    upgrade = Upgrade.objects.create(
        cluster=cluster, kind=kind or Upgrade.Kind.KUBERNETES, params=params or {},
        from_version=cluster.kubernetes_version, to_version=to_version, mode=mode, strategy=strategy,
        created_by=_user(user),
    )
    job = jobs.enqueue(runner_kind, target=upgrade, cluster=cluster, user=user, params={"upgrade_id": upgrade.pk})
    upgrade.job = job
    upgrade.save(update_fields=["job"])
    Cluster.objects.filter(pk=cluster.pk).update(state=Cluster.State.UPGRADING, state_reason=state_reason)
    audit.record("upgrade", cluster, user=user, changes=changes, message=message)
    return job


def _refuse_if_busy(cluster: Cluster, field: str = "kubernetes_version") -> None:
    running = active_upgrade(cluster)
    if running is None:
        return
    if running.kind == Upgrade.Kind.KUBELET_ARGS:
        raise UpgradeError(f"A rollout of kubelet arguments to {cluster.name} is already {running.state}; "
                           "resume or cancel it first.", field)
    raise UpgradeError(f"An upgrade of {cluster.name} to {running.to_version} is already {running.state}; "
                       "resume or cancel it first.", field)


@transaction.atomic
def start_kubelet_args(cluster: Cluster, kubelet_args: dict, *, user=None, mode: str | None = None) -> Job:
    """Roll ``services.kubelet.extra_args`` to every node: same batches, drain rules and node walk as an
    upgrade, each batch's Upgrading step a Plan running Corral's node-config image. Returns the Job.

    Needs the ``upgrade`` permission, like a version change: it restarts every kubelet.
    """
    from clusters import config, schema
    from clusters.nodeops.plans import kubelet_arg_flags
    from clusters.upgrades.runners import KubeletArgsRunner

    field = "services.kubelet.extra_args"
    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    access.require(user, "upgrade", cluster)
    if cluster.kind not in UPGRADABLE:
        raise UpgradeError(f"{cluster.name} is an imported cluster; its kubelets are configured outside Corral.", field)
    try:
        kubelet_arg_flags(kubelet_args)
    except ValueError as exc:
        raise UpgradeError(str(exc), field) from None
    _refuse_if_busy(cluster, field)
    document = config.current_document(cluster)
    strategy = dict(document.get("upgrade_strategy") or schema.defaults()["upgrade_strategy"])
    mode = _mode(mode, strategy, field)
    return _queue_run(
        cluster, KubeletArgsRunner.kind, user=user, mode=mode, strategy=strategy,
        to_version=cluster.kubernetes_version, kind=Upgrade.Kind.KUBELET_ARGS,
        params={"kubelet_args": dict(kubelet_args)},
        state_reason=f"Rollout of kubelet arguments ({mode}) queued",
        changes={field: [None, dict(kubelet_args)]},
        message=f"roll kubelet arguments {dict(kubelet_args)} ({mode})",
    )


@transaction.atomic
def restore_rollout(cluster: Cluster, *, version: str | None = None, kubelet_args: dict | None = None,
                    job_id=None, note: str = "") -> Upgrade:
    """An Upgrade row run inside a restore's own job: the snapshot's version (a downgrade is allowed here
    only, because the etcd data already is the snapshot's) or its kubelet arguments. The caller has
    passed the permission layer for ``restore``, which covers both."""
    from clusters import config, schema

    cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
    document = config.current_document(cluster)
    strategy = dict(document.get("upgrade_strategy") or schema.defaults()["upgrade_strategy"])
    strategy.setdefault("mode", "rolling")
    if cluster.kind == Cluster.Kind.K3S and version:
        strategy["k3s"] = dict(document.get("k3s_upgrade_strategy") or schema.defaults()["k3s_upgrade_strategy"])
    upgrade = Upgrade.objects.create(
        cluster=cluster, kind=Upgrade.Kind.KUBERNETES if version else Upgrade.Kind.KUBELET_ARGS,
        params={"kubelet_args": dict(kubelet_args or {}), "restore": note} if not version else {"restore": note},
        from_version=cluster.kubernetes_version, to_version=version or cluster.kubernetes_version,
        mode=strategy["mode"], strategy=strategy, job_id=job_id)
    audit.record("upgrade", cluster, message=f"{upgrade} ({note})" if note else str(upgrade))
    return upgrade


@transaction.atomic
def resume_upgrade(upgrade: Upgrade, *, user=None) -> Job:
    """Queue a paused upgrade's job again; it continues from the stored node states."""
    upgrade = Upgrade.objects.select_for_update(of=("self",)).select_related("job", "cluster").get(
        pk=upgrade.pk)
    access.require(user, "upgrade", upgrade.cluster)
    job = upgrade.job
    if job is None:
        raise UpgradeError("This upgrade has no job to resume.")
    if not resumable(upgrade):
        raise UpgradeError(f"The upgrade is {upgrade.state} and its job {job.status}; only a paused upgrade "
                           "can be resumed.")
    try:
        job = jobs.resume(job, user=user)
    except JobStateError as exc:
        raise UpgradeError(str(exc)) from None
    Upgrade.objects.filter(pk=upgrade.pk).update(state=Upgrade.State.RUNNING, reason="", finished_at=None)
    Cluster.objects.filter(pk=upgrade.cluster_id).update(
        state=Cluster.State.UPGRADING, state_reason=f"{upgrade} resuming")
    audit.record("resume", upgrade.cluster, user=user, message=f"resume {upgrade}")
    return job


@transaction.atomic
def cancel_upgrade(upgrade: Upgrade, *, user=None) -> Upgrade:
    """Stop an upgrade. A running job starts no new node, lets nodes being upgraded finish, then
    uncordons what it held; a paused or queued one is cancelled at once and a short job releases
    any node it still holds."""
    from clusters.upgrades.runners import ReleaseRunner

    upgrade = Upgrade.objects.select_for_update(of=("self",)).select_related("job", "cluster").get(
        pk=upgrade.pk)
    access.require(user, "upgrade", upgrade.cluster)
    if not cancellable(upgrade):
        raise UpgradeError(f"The upgrade has already {upgrade.state}.")
    job = upgrade.job
    if job is not None and job.status not in Job.FINISHED:
        try:
            job = jobs.cancel(job, user=user)
        except JobStateError as exc:
            raise UpgradeError(str(exc)) from None
    if job is not None and job.status == Job.Status.RUNNING:
        audit.record("cancel", upgrade.cluster, user=user, message=f"cancel upgrade to {upgrade.to_version}")
        return upgrade  # the runner stops at its next look and records the outcome
    done = upgrade.nodes.filter(state="active").count()
    total = upgrade.nodes.count()
    reason = f"cancelled on request; {done} of {total} nodes were " + (
        f"upgraded to {upgrade.to_version}" if upgrade.kind == Upgrade.Kind.KUBERNETES else "changed")
    Upgrade.objects.filter(pk=upgrade.pk).update(state=Upgrade.State.CANCELLED, reason=reason,
                                                 finished_at=timezone.now())
    Cluster.objects.filter(pk=upgrade.cluster_id).update(
        state=Cluster.State.ACTIVE, state_reason=f"{upgrade} cancelled: {reason}")
    audit.record("cancel", upgrade.cluster, user=user, message=f"cancel upgrade to {upgrade.to_version}")
    jobs.enqueue(ReleaseRunner.kind, target=upgrade, cluster=upgrade.cluster, user=user,
                 params={"upgrade_id": upgrade.pk})
    upgrade.refresh_from_db()
    return upgrade
