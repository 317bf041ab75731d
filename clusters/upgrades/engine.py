"""What every node-operation run does, whatever the cluster kind: plan once, advance, stop safely.

A run is an Upgrade row of one of two kinds: a Kubernetes version (``kubernetes``) or kubelet
arguments (``kubelet-args``); both change nodes only through ``clusters.nodeops`` (SUC Plans).

The engine keeps all of its state in the database (Upgrade and NodeUpgrade rows), so a
run can stop at any point — paused, cancelled, its worker killed — and the next run of the
same job continues from the stored node states. It follows the nodes with one watch
(``nodeops.NodeWatcher``) and wakes when a node changes, so looking costs no requests.

Stopping is always graceful: a pause (a node that did not come back, a drain that cannot
finish, an unreachable cluster) or a cancel starts no new node, lets the nodes already
being upgraded finish (or time out), then uncordons what the upgrade cordoned. A run that
finds its Job row no longer running, or claimed by another attempt, stops at once and touches
nothing (``JobSuperseded``): two engines never drive one upgrade.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from clusters import kube
from clusters.models import Cluster, NodeUpgrade, Upgrade
from clusters.nodeops import ClusterApi, ControllerMissing, NodeOps, NodeWatcher, Operation
from clusters.upgrades.planning import PlannedNode, describe, kubelet_version
from clusters.upgrades.records import Recorder, percent
from portal.jobs import JobCancelled, JobFailed, JobPaused, NullReporter, Reporter
from portal.jobs.runner import JobSuperseded

logger = logging.getLogger("corral.clusters")

S = NodeUpgrade.State
U = Upgrade.State
WAIT_MAX = 1.0  # longest sleep between looks when no node changes (timeouts, drains, cancel checks)
CHECK_EVERY = 0.5
DISTRIBUTIONS = {Cluster.Kind.RKE: "rke", Cluster.Kind.K3S: "k3s"}


def operation_for(upgrade: Upgrade) -> Operation:
    """What the run asks of each node: the target version, or the kubelet arguments."""
    distribution = DISTRIBUTIONS.get(upgrade.cluster.kind, "rke")
    if upgrade.kind == Upgrade.Kind.KUBELET_ARGS:
        return Operation.kubelet_args(distribution, (upgrade.params or {}).get("kubelet_args") or {})
    return Operation.kubernetes_version(distribution, upgrade.to_version)


class Halt(Exception):
    """The upgrade stops and can be resumed; the message says why, in words."""


class Engine:
    """Base of the rke and k3s engines: lifecycle, bookkeeping, polling, cancellation."""

    def __init__(self, upgrade: Upgrade, reporter: Reporter | None = None, job_id=None):
        self.upgrade = upgrade
        self.cluster: Cluster = upgrade.cluster
        self.reporter = reporter or NullReporter()
        self.strategy: dict[str, Any] = upgrade.strategy or {}
        self.target = upgrade.to_version
        self.rolling = upgrade.mode != "parallel"
        self.rec = Recorder(upgrade, job_id if job_id is not None else upgrade.job_id)
        self.op = operation_for(upgrade)
        self.versioned = upgrade.kind != Upgrade.Kind.KUBELET_ARGS
        self.api: ClusterApi | None = None
        self.ops: NodeOps | None = None
        self.watcher: NodeWatcher | None = None
        self._seen = 0
        self.rows: list[NodeUpgrade] = []
        self.pause_reasons: list[str] = []
        self.cancelling = False
        self._last_check = 0.0
        self._last_progress: tuple[int, str] | None = None

    # ------------------------------------------------------------------ for subclasses
    def plan(self, nodes: dict[str, dict[str, Any]]) -> list[PlannedNode]:
        raise NotImplementedError

    def execute(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """Give back what the upgrade holds (cordons, plans) when it stops before the end."""
        raise NotImplementedError

    @property
    def goal(self) -> str:
        """What nodes end up with, in words: "v1.16.8" or "kubelet arguments max-pods=250"."""
        return self.target if self.versioned else self.op.summary

    # ------------------------------------------------------------------ settings
    @property
    def node_timeout(self) -> int:
        return int(self.strategy.get("node_upgrade_timeout") or 600)

    @property
    def halted(self) -> bool:
        return bool(self.pause_reasons) or self.cancelling

    def pause(self, reason: str) -> None:
        if reason not in self.pause_reasons:
            self.pause_reasons.append(reason)
            self.rec.log(f"Pausing: {reason}", "warning")

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        self.upgrade.refresh_from_db()
        if self.upgrade.state in (U.SUCCEEDED, U.FAILED, U.CANCELLED):
            self.rec.log(f"The upgrade has already {self.upgrade.state}; nothing to do")
            self.rec.flush()
            return {"upgrade": self.upgrade.pk, "state": self.upgrade.state}
        started = time.monotonic()
        self._mark_running()
        try:
            self.api = ClusterApi(self.cluster.kubeconfig, insecure_tls=self.cluster.insecure_tls)
            self.ops = NodeOps(self.api, log=self.rec.log)
            self.watcher = NodeWatcher(self.api).start()
            self._ensure_plan()
            self.rec.flush()
            try:
                self.ops.ensure_controller()  # before any node is touched
            except ControllerMissing as exc:
                raise JobFailed(exc.reason) from None
            self._snapshot_first()
            self.execute()
            if self.cancelling:
                raise JobCancelled("cancelled on request")
            if self.pause_reasons:
                raise Halt("; ".join(self.pause_reasons))
            self._note_newcomers()
            seconds = round(time.monotonic() - started, 2)
            self._finish(U.SUCCEEDED, "")
            self.rec.log(f"All {len(self.rows)} nodes {'run' if self.versioned else 'have'} {self.goal} ({seconds} s, "
                         f"{self.api.requests} API requests)")
        except JobSuperseded as exc:
            self.rec.log(f"Stopping without touching the cluster: {exc}", "warning")
            raise
        except JobCancelled:
            self._safe_release()
            self._finish(U.CANCELLED, self._cancel_summary())
            raise
        except Halt as exc:
            self._safe_release()
            self._finish(U.PAUSED, str(exc))
            raise JobPaused(str(exc)) from None
        except (kube.ClusterError, kube.KubeconfigError) as exc:
            reason = getattr(exc, "reason", str(exc))
            self.rec.log(f"The cluster could not be used: {reason}", "error")
            self._safe_release()
            self._finish(U.PAUSED, f"the cluster could not be used: {reason}")
            raise JobPaused(f"the cluster could not be used: {reason}") from None
        except JobFailed as exc:
            self._safe_release()
            self._finish(U.FAILED, str(exc))
            raise
        except Exception as exc:
            self._safe_release()
            self._finish(U.FAILED, f"unexpected error: {exc.__class__.__name__}: {exc}")
            raise
        finally:
            self.rec.flush()
            if self.watcher is not None:
                self.watcher.stop()
            if self.api is not None:
                self.api.close()
        return {"upgrade": self.upgrade.pk, "kind": self.upgrade.kind, "nodes": len(self.rows),
                "batches": len({r.batch for r in self.rows}), "to_version": self.target, "seconds": seconds,
                "api_requests": self.api.requests}

    def _mark_running(self) -> None:
        with transaction.atomic():
            Upgrade.objects.filter(pk=self.upgrade.pk).update(state=U.RUNNING, reason="")
            Cluster.objects.filter(pk=self.cluster.pk).update(
                state=Cluster.State.UPGRADING,
                state_reason=f"{self.title} ({self.upgrade.mode})")
        self.upgrade.state, self.upgrade.reason = U.RUNNING, ""

    def _ensure_plan(self) -> None:
        self.rows = list(self.upgrade.nodes.order_by("batch", "node_name"))
        if self.rows:
            done = sum(r.state == S.ACTIVE for r in self.rows)
            self.rec.log(f"Continuing: {done} of {len(self.rows)} nodes done")
            return
        planned = self.plan(self.live())
        if not planned:
            raise JobFailed("the cluster has no nodes to upgrade")
        with transaction.atomic():
            NodeUpgrade.objects.bulk_create([
                NodeUpgrade(upgrade=self.upgrade, node_name=p.name, role=p.role, batch=p.batch,
                            cordoned_before=p.cordoned_before) for p in planned
            ])
        self.rows = list(self.upgrade.nodes.order_by("batch", "node_name"))
        what = f"{self.upgrade.from_version or '?'} → {self.target}" if self.versioned else self.goal
        self.rec.log(f"Plan for {what} ({self.upgrade.mode}): {len(planned)} nodes; {describe(planned)}")
        for p in planned:
            if p.cordoned_before:
                self.rec.log(f"{p.role} node {p.name} was already cordoned; it stays cordoned after its upgrade")

    def _snapshot_first(self) -> None:
        """A version upgrade starts with a snapshot of the cluster as it is (not a restore's own step)."""
        from django.conf import settings

        params = self.upgrade.params or {}
        if (not self.versioned or "restore" in params or params.get("snapshot")
                or not getattr(settings, "SNAPSHOT_BEFORE_UPGRADE", True)
                or any(r.state != S.PENDING for r in self.rows)):
            return
        from backups.hooks import snapshot_before_upgrade

        snapshot = snapshot_before_upgrade(self.upgrade, self.reporter)
        Upgrade.objects.filter(pk=self.upgrade.pk).update(params={**params, "snapshot": snapshot.name})
        self.upgrade.params = {**params, "snapshot": snapshot.name}
        self.rec.log(f"Snapshot {snapshot.name} taken before the upgrade")
        self.rec.flush()

    def _note_newcomers(self) -> None:
        """Nodes that joined after the plan was made are not upgraded by this run; say so."""
        planned = {r.node_name for r in self.rows}
        others = sorted(f"{name} ({kubelet_version(node) or '?'})" for name, node in self.live().items()
                        if name not in planned and (not self.versioned or kubelet_version(node) != self.target))
        if others:
            self.rec.log(f"Nodes that joined during the run were not changed: {', '.join(others)}; "
                         "change them with another run", "warning")

    def _safe_release(self) -> None:
        if self.api is None:
            return
        try:
            self.release()
        except (kube.ClusterError, kube.KubeconfigError) as exc:
            held = [r.node_name for r in self.rows if r.state not in (S.PENDING, S.ACTIVE)]
            self.rec.log(f"Could not release nodes {', '.join(held)}: {getattr(exc, 'reason', exc)}; "
                         "they are released when the upgrade is resumed or cancelled", "error")
        except Exception:  # noqa: BLE001 - releasing must not hide why the run stopped
            logger.exception("upgrade %s: releasing nodes failed", self.upgrade.pk)
        self.rec.flush()

    def _finish(self, state: str, reason: str) -> None:
        now = timezone.now()
        if state != U.PAUSED:
            self.refresh_inventory()  # nodes and version as they are now; the cluster is still Upgrading
        version = ""
        if state != U.PAUSED and self.api is not None:
            try:
                version = self.api.version()
            except (kube.ClusterError, Exception):  # noqa: BLE001 - the version is a nicety here
                version = ""
        with transaction.atomic():
            fields: dict[str, Any] = {"state": state, "reason": reason}
            if state != U.PAUSED:
                fields["finished_at"] = now
            Upgrade.objects.filter(pk=self.upgrade.pk).update(**fields)
            cluster_fields: dict[str, Any]
            if state == U.SUCCEEDED:
                cluster_fields = {"state": Cluster.State.ACTIVE, "state_reason": "",
                                  "kubernetes_version": version or self.target}
            elif state == U.PAUSED:
                cluster_fields = {"state": Cluster.State.UPGRADE_PAUSED,
                                  "state_reason": f"{self.title} paused: {reason}"}
            else:
                cluster_fields = {"state": Cluster.State.ACTIVE,
                                  "state_reason": f"{self.title} {state}: {reason}"}
                if version:
                    cluster_fields["kubernetes_version"] = version
            Cluster.objects.filter(pk=self.cluster.pk).update(**cluster_fields)
        for key, value in fields.items():
            setattr(self.upgrade, key, value)

    def refresh_inventory(self) -> None:
        from clusters import inventory

        try:
            inventory.sync_clusters([self.cluster.pk])
        except Exception:  # noqa: BLE001 - the periodic sync catches up
            logger.exception("inventory refresh after upgrade %s failed", self.upgrade.pk)

    @property
    def title(self) -> str:
        return f"Upgrade to {self.target}" if self.versioned else f"Rollout of {self.goal}"

    def _cancel_summary(self) -> str:
        done = sum(r.state == S.ACTIVE for r in self.rows)
        if self.versioned:
            return f"cancelled on request; {done} of {len(self.rows)} nodes were upgraded to {self.target}"
        return f"cancelled on request; {done} of {len(self.rows)} nodes have {self.goal}"

    # ------------------------------------------------------------------ following nodes
    def live(self) -> dict[str, dict[str, Any]]:
        """The nodes as the watch last saw them (a LIST when no watch runs, e.g. releasing)."""
        if self.watcher is not None:
            return self.watcher.snapshot()
        return self.api.nodes()

    def wait_change(self, timeout: float = WAIT_MAX) -> None:
        """Sleep until a node changes or ``timeout`` passes; costs no request."""
        if self.watcher is None:
            time.sleep(min(timeout, 0.2))
            return
        self._seen = self.watcher.wait(self._seen, timeout)

    # ------------------------------------------------------------------ helpers for the loops
    def tick(self, message: str) -> None:
        """Progress to the job (only when it changed) and a check for cancellation."""
        now = time.monotonic()
        progress = (min(99, percent(self.rows)), message)
        try:
            if progress != self._last_progress:
                self._last_progress = progress
                self._last_check = now
                self.reporter.progress(*progress)
            elif now - self._last_check >= CHECK_EVERY:
                self._last_check = now
                self.reporter.checkpoint()
        except JobSuperseded:
            raise
        except JobCancelled:
            if not self.cancelling:
                self.cancelling = True
                self.rec.log("Cancellation requested: no new node starts; nodes being upgraded finish first",
                             "warning")
