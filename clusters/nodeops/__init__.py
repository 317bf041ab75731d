"""Node operations: the one way Corral changes a node (Kubernetes version, kubelet arguments, later etcd).

Nothing in Corral changes a node's software directly; it writes system-upgrade-controller Plans
(``upgrade.cattle.io/v1``, namespace ``system-upgrade``) through the cluster's API, as RKE2 and
k3s are maintained on real clusters, and follows the nodes until SUC reports them done.

    ops = NodeOps(api, log=recorder.log)      # api: clusters.nodeops.api.ClusterApi
    ops.ensure_controller()                   # installs SUC from manifests/ when missing
    op = Operation.kubernetes_version("rke", "v1.16.8")
    ops.put_plan(plan_body("corral-7-k8s-b3", op, selector=hostname_selector(names), concurrency=2))
    ...   op.done(node, plan, ops.plan_hash(plan))  /  ops.failed_jobs(plan)
    ops.delete_plan("corral-7-k8s-b3")

Modules: ``api`` (the client wrapper), ``suc`` (install and check the controller), ``plans``
(Operation, Plan bodies, done and failure rules), ``watch`` (following nodes with a watch),
``images`` (the pinned images; README.md documents them).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clusters import kube
from clusters.nodeops import suc
from clusters.nodeops.api import ClusterApi
from clusters.nodeops.plans import (
    GROUP,
    JOB_NODE,
    JOB_PLAN,
    KUBELET_ARGS,
    KUBERNETES_VERSION,
    NAMESPACE,
    PLURAL,
    VERSION,
    Operation,
    hostname_selector,
    job_failure,
    plan_body,
)
from clusters.nodeops.suc import ControllerMissing
from clusters.nodeops.watch import NodeWatcher

__all__ = [
    "KUBELET_ARGS", "KUBERNETES_VERSION", "ClusterApi", "ControllerMissing", "NodeOps", "NodeWatcher", "Operation",
    "hostname_selector", "plan_body",
]


class NodeOps:
    """Plans and their Jobs on one cluster; every node change Corral makes goes through here."""

    def __init__(self, api: ClusterApi, log: Callable[..., None] | None = None):
        self.api = api
        self.log = log or (lambda message, level="info": None)
        self.hashes: dict[str, str] = {}
        self.controller_checked = False

    def ensure_controller(self) -> None:
        """Check SUC once per run (installing it when missing); raises ControllerMissing."""
        if not self.controller_checked:
            suc.ensure_installed(self.api, log=self.log)
            self.controller_checked = True

    # ------------------------------------------------------------------ plans
    def put_plan(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a Plan (after making sure SUC runs)."""
        self.ensure_controller()
        try:
            plan = self.api.put_custom(GROUP, VERSION, NAMESPACE, PLURAL, body)
        except kube.ClusterError as exc:
            if exc.status == 404:  # the CRD went away under us
                self.controller_checked = False
                raise ControllerMissing("system-upgrade-controller's Plan resource (upgrade.cattle.io/v1) is not "
                                        "served by this cluster") from None
            raise
        self._remember(plan)
        return plan

    def target(self, name: str, hostnames: list[str], concurrency: int) -> dict[str, Any]:
        """Point an existing Plan at these nodes (the hash, so nodes already done, stays the same)."""
        plan = self.api.patch_custom(GROUP, VERSION, NAMESPACE, PLURAL, name, {
            "spec": {"nodeSelector": hostname_selector(hostnames), "concurrency": max(1, concurrency)}})
        self._remember(plan)
        return plan

    def patch_plan(self, name: str, patch: dict[str, Any]) -> None:
        try:
            self.api.patch_custom(GROUP, VERSION, NAMESPACE, PLURAL, name, patch)
        except kube.ClusterError as exc:
            if exc.status != 404:
                raise

    def get_plan(self, name: str) -> dict[str, Any] | None:
        plan = self.api.get_custom(GROUP, VERSION, NAMESPACE, PLURAL, name)
        if plan is not None:
            self._remember(plan)
        return plan

    def delete_plan(self, name: str) -> None:
        self.hashes.pop(name, None)
        try:
            self.api.delete_custom(GROUP, VERSION, NAMESPACE, PLURAL, name)
        except kube.ClusterError as exc:
            if exc.status != 404:
                raise

    def plans(self, selector: str) -> list[dict[str, Any]]:
        try:
            return self.api.list_custom(GROUP, VERSION, NAMESPACE, PLURAL, label_selector=selector)
        except kube.ClusterError as exc:
            if exc.status == 404:
                return []  # no Plan resource: no Plans
            raise

    def delete_plans(self, selector: str) -> list[str]:
        """Delete every Plan the label selector picks; returns their names."""
        names = [p["metadata"]["name"] for p in self.plans(selector)]
        for name in names:
            self.delete_plan(name)
        return names

    def plan_hash(self, name: str, *, refresh: bool = False) -> str | None:
        """The Plan's ``status.latestHash`` (SUC's completion label value), once SUC has resolved it."""
        if refresh or name not in self.hashes:
            self.get_plan(name)
        return self.hashes.get(name)

    def _remember(self, plan: dict[str, Any]) -> None:
        status = plan.get("status") or {}
        digest = status.get("latestHash")
        # SUC reports the version as an image tag ("+" becomes "-"); a hash for another version is stale.
        if digest and _tag(status.get("latestVersion")) == _tag((plan.get("spec") or {}).get("version")):
            self.hashes[plan["metadata"]["name"]] = digest

    # ------------------------------------------------------------------ jobs
    def jobs(self, plan: str) -> dict[str, dict[str, Any]]:
        """The SUC Jobs of a Plan by node (the newest per node)."""
        out: dict[str, dict[str, Any]] = {}
        for job in sorted(self.api.jobs(NAMESPACE, f"{JOB_PLAN}={plan}"),
                          key=lambda j: j["metadata"].get("creationTimestamp") or ""):
            node = (job["metadata"].get("labels") or {}).get(JOB_NODE)
            if node:
                out[node] = job
        return out

    def failed_jobs(self, plan: str) -> dict[str, str]:
        """Nodes whose SUC Job for the Plan failed, with the reason in words."""
        return {node: reason for node, job in self.jobs(plan).items() if (reason := job_failure(job))}

    def forget_jobs(self, plan: str, node: str) -> None:
        """Delete a node's old Jobs for a Plan, so a retry starts a fresh one."""
        for job in self.api.jobs(NAMESPACE, f"{JOB_PLAN}={plan},{JOB_NODE}={node}"):
            self.api.delete_job(NAMESPACE, job["metadata"]["name"])

    def watch_nodes(self) -> NodeWatcher:
        return NodeWatcher(self.api).start()


def _tag(version: str | None) -> str:
    return (version or "").replace("+", "-")
