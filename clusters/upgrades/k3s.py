"""k3s upgrades: the portal writes system-upgrade-controller Plans and follows the nodes.

Two ``upgrade.cattle.io/v1`` Plans in namespace ``system-upgrade``: ``k3s-server`` for nodes
labelled ``node-role.kubernetes.io/master=true`` and ``k3s-agent`` for the others, whose
``prepare`` step waits for the server plan (``prepare k3s-server``), so servers go first.
Each has the target ``version``, ``concurrency`` from Control Plane / Worker Concurrency,
and ``drain`` (with node_drain_input) when Drain Control Plane / Worker Nodes is on, else
``cordon: true``. Parallel mode sets the concurrency to the number of nodes of the role and
neither cordons nor drains.

The controller does the work; the engine watches each node and records what it sees as the
same walk rke nodes make (Cordoned when the controller cordons it, Upgrading while it is
NotReady, Upgraded when it is Ready on the target, Active once uncordoned). A node that is
not done within node_upgrade_timeout (plus the drain timeout when draining) pauses the
upgrade: the Plans are deleted so no other node starts, nodes being upgraded finish, and
cordoned nodes are uncordoned. Resuming writes the Plans again.
"""
from __future__ import annotations

import time
from typing import Any

from clusters.nodeops import ControllerMissing, Operation, plan_body
from clusters.nodeops.plans import NAMESPACE
from clusters.upgrades.engine import Engine
from clusters.upgrades.planning import PlannedNode, is_cordoned, is_ready, kubelet_version, plan_k3s
from clusters.upgrades.records import HOLDING, S
from portal.jobs import JobFailed

SERVER_PLAN, AGENT_PLAN = "k3s-server", "k3s-agent"
MASTER_LABEL = "node-role.kubernetes.io/master"
WALK = [S.PENDING, S.CORDONED, S.DRAINING, S.DRAINED, S.UPGRADING, S.UPGRADED, S.ACTIVE]


def drain_spec(drain_input: dict[str, Any]) -> dict[str, Any]:
    """node_drain_input in the Plan's terms (the timeout is a Go duration: nanoseconds)."""
    spec: dict[str, Any] = {
        "force": bool(drain_input.get("force")),
        "ignoreDaemonSets": bool(drain_input.get("ignore_daemonsets", True)),
        "deleteLocalData": bool(drain_input.get("delete_local_data")),
    }
    grace = drain_input.get("grace_period", -1)
    if grace is not None and grace >= 0:
        spec["gracePeriod"] = int(grace)
    if drain_input.get("timeout"):
        spec["timeout"] = int(drain_input["timeout"]) * 1_000_000_000
    return spec


def plan_objects(target: str, strategy: dict[str, Any], mode: str, counts: dict[str, int],
                 labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The server and agent Plans for an upgrade to ``target``."""
    k3s = strategy.get("k3s") or {}
    drain_input = strategy.get("node_drain_input") or {}
    op = Operation.kubernetes_version("k3s", target)
    out = []
    for name, role, operator in ((SERVER_PLAN, "server", "In"), (AGENT_PLAN, "agent", "DoesNotExist")):
        expression: dict[str, Any] = {"key": MASTER_LABEL, "operator": operator}
        if operator == "In":
            expression["values"] = ["true"]
        drain, cordon = None, None
        if mode == "parallel":
            concurrency = max(1, counts.get(role, 1))
        else:
            concurrency = int(k3s.get("server_concurrency" if role == "server" else "worker_concurrency") or 1)
            if k3s.get("drain_server_nodes" if role == "server" else "drain_worker_nodes"):
                drain = drain_spec(drain_input)
            else:
                cordon = True
        prepare = {"image": op.image, "args": ["prepare", SERVER_PLAN]} if role == "agent" else None
        out.append(plan_body(name, op, selector={"matchExpressions": [expression]}, concurrency=concurrency,
                             labels=labels, cordon=cordon, drain=drain, prepare=prepare))
    return out


class K3sEngine(Engine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        k3s = self.strategy.get("k3s") or {}
        self.drains = {"server": self.rolling and bool(k3s.get("drain_server_nodes")),
                       "agent": self.rolling and bool(k3s.get("drain_worker_nodes"))}
        self.clock: dict[str, float] = {}
        self.plans_written = False

    def plan(self, nodes: dict[str, dict[str, Any]]) -> list[PlannedNode]:
        return plan_k3s(list(nodes.values()))

    def limit(self, role: str) -> float:
        extra = int((self.strategy.get("node_drain_input") or {}).get("timeout") or 120) if self.drains[role] else 0
        return self.node_timeout + extra

    # ------------------------------------------------------------------ plans
    def write_plans(self) -> None:
        counts = {role: sum(1 for r in self.rows if r.role == role) for role in ("server", "agent")}
        for body in plan_objects(self.target, self.strategy, self.upgrade.mode, counts,
                                 {"corral.io/upgrade": str(self.upgrade.pk)}):
            try:
                self.ops.put_plan(body)
            except ControllerMissing as exc:
                raise JobFailed(exc.reason) from None
            spec = body["spec"]
            how = "drain" if "drain" in spec else ("cordon" if spec.get("cordon") else "no cordon")
            self.rec.log(f"Plan {NAMESPACE}/{body['metadata']['name']}: version {spec['version']}, "
                         f"concurrency {spec['concurrency']}, {how}")
        self.plans_written = True

    def delete_plans(self) -> None:
        for name in (SERVER_PLAN, AGENT_PLAN):
            self.ops.delete_plan(name)
        if self.plans_written:
            self.rec.log("Plans deleted: no further node starts")
        self.plans_written = False

    # ------------------------------------------------------------------ following the nodes
    def execute(self) -> None:
        live = self.live()
        for row in self.rows:
            if row.state == S.FAILED:
                self.rec.move(row, S.PENDING, "retrying after resume")
            node = live.get(row.node_name)
            if row.state == S.PENDING and node is not None and self.observed(row, node) == S.ACTIVE:
                self.rec.move(row, S.ACTIVE, f"already runs {self.target}")
        self.write_plans()
        self.rec.flush()
        while True:
            done = sum(r.state == S.ACTIVE for r in self.rows)
            self.tick(f"{done} of {len(self.rows)} nodes on {self.target}")
            live = self.live()
            for row in self.rows:
                self.follow(row, live.get(row.node_name))
            self.rec.flush()
            if all(r.state == S.ACTIVE for r in self.rows):
                return
            if self.halted:
                if self.plans_written:
                    self.delete_plans()
                if not any(r.state == S.UPGRADING for r in self.rows):
                    return
            self.wait_change()

    def observed(self, row, node: dict[str, Any]) -> str:
        ready, version = is_ready(node), kubelet_version(node)
        held = is_cordoned(node) and not row.cordoned_before
        if ready and version == self.target:
            return S.UPGRADED if held else S.ACTIVE
        if not ready:
            return S.UPGRADING
        if held:
            return S.DRAINING if self.drains[row.role] else S.CORDONED
        return S.PENDING

    def follow(self, row, node: dict[str, Any] | None) -> None:
        if row.state == S.ACTIVE:
            return
        if node is None:
            self.rec.move(row, S.ACTIVE, "the node left the cluster; nothing to upgrade")
            return
        if row.state == S.FAILED:
            return
        seen = self.observed(row, node)
        if WALK.index(seen) > WALK.index(row.state) and not (self.halted and row.state == S.PENDING):
            self.walk_to(row, seen, node)
        if row.state in HOLDING | {S.UPGRADING}:
            since = self.clock.setdefault(row.node_name, time.monotonic())
            if time.monotonic() - since > self.limit(row.role):
                reason = (f"node {row.node_name} was not back Ready on {self.target} within {int(self.limit(row.role))} s "
                          f"(kubelet {kubelet_version(node) or '?'}, Ready={'True' if is_ready(node) else 'False'})")
                self.rec.move(row, S.FAILED, reason)
                self.pause(reason)

    def walk_to(self, row, seen: str, node: dict[str, Any]) -> None:
        drains = self.drains[row.role]
        for state in WALK[WALK.index(row.state) + 1: WALK.index(seen) + 1]:
            if state == S.CORDONED and not self.rolling:
                continue
            if state in (S.DRAINING, S.DRAINED) and not drains:
                continue
            message = ""
            if state == S.CORDONED and row.cordoned_before:
                message = "was already cordoned; stays cordoned"
            elif state == S.UPGRADING:
                message = f"→ {self.target}"
            elif state == S.UPGRADED:
                message = f"Ready on {self.target}"
            if row.state == S.PENDING:
                self.clock[row.node_name] = time.monotonic()
            self.rec.move(row, state, message)

    # ------------------------------------------------------------------ stopping
    def release(self) -> None:
        self.delete_plans()
        for row in self.rows:
            if row.state in (S.PENDING, S.ACTIVE):
                continue
            if not row.cordoned_before:
                self.api.uncordon(row.node_name)
            if row.state in HOLDING:
                self.rec.move(row, S.PENDING, "uncordoned: the upgrade stopped before this node was upgraded")
            elif row.state == S.UPGRADED:
                self.rec.move(row, S.ACTIVE, "uncordoned")
