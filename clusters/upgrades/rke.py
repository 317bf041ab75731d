"""Rolling (and parallel) upgrades of rke clusters through the Corral node agent.

Batches run one after another (see planning). In rolling mode each node of a batch walks
Active → Cordoned → [Draining → Drained →] Upgrading → Upgraded → Active; the batch is done
when all its nodes are Active again. Before a node starts, the engine checks that its role
would not have more nodes out of service (NotReady, cordoned or upgrading) than the batch
allows. Parallel mode — the behaviour before zero-downtime upgrades — upgrades every node of
a role at once with no cordon and no drain.

The node agent protocol: the portal sets annotation ``nodeagent.corral.io/desired-version``;
the agent answers in ``nodeagent.corral.io/state`` (Upgrading, Upgraded, Failed) and the
node comes back Ready with ``status.nodeInfo.kubeletVersion`` = the desired version.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clusters.upgrades import drain
from clusters.upgrades.engine import Engine
from clusters.upgrades.nodes import (
    AGENT_STATE,
    CORDONED_BY,
    DESIRED,
    agent_failed,
    annotations,
    ready_condition,
)
from clusters.upgrades.planning import (
    PlannedNode,
    is_cordoned,
    is_ready,
    kubelet_version,
    plan_rke,
    rke_role,
)
from clusters.upgrades.records import HOLDING, IN_FLIGHT, S

PARALLEL_CALLS = 16
LIMIT_NAMES = {"etcd": "etcd nodes are upgraded one at a time",
               "controlplane": "max_unavailable_controlplane", "worker": "max_unavailable_worker"}


class RkeEngine(Engine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drain_on = self.rolling and bool(self.strategy.get("drain"))
        self.drain_options: dict[str, Any] = dict(self.strategy.get("node_drain_input") or {})
        self.clock: dict[str, float] = {}
        self.drains: dict[str, drain.DrainState] = {}
        self.limits: dict[str, int] = {}
        self.marker = f"upgrade-{self.upgrade.pk}"

    def plan(self, nodes: dict[str, dict[str, Any]]) -> list[PlannedNode]:
        return plan_rke(list(nodes.values()), self.strategy, self.upgrade.mode)

    # ------------------------------------------------------------------ batches
    def execute(self) -> None:
        batches = sorted({r.batch for r in self.rows})
        for row in self.rows:
            size = sum(1 for r in self.rows if r.batch == row.batch)
            self.limits[row.role] = max(self.limits.get(row.role, 0), size)
        for number, batch in enumerate(batches, 1):
            members = [r for r in self.rows if r.batch == batch]
            if all(r.state == S.ACTIVE for r in members):
                continue
            self.run_batch(number, len(batches), members)
            if self.halted:
                return

    def run_batch(self, number: int, total: int, members: list) -> None:
        role = members[0].role
        names = ", ".join(r.node_name for r in members)
        self.rec.log(f"Batch {number}/{total}: {role} {names}")
        message = f"batch {number}/{total} ({role}): {names}"[:255]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_CALLS, len(members)))) as pool:
            while True:
                self.tick(message)
                live = self.api.nodes()
                approved = self.approve_starts(members, live)
                # Nodes of a batch are independent: their API calls go out together.
                list(pool.map(self.advance, members, [live] * len(members), [r.pk in approved for r in members]))
                self.rec.flush()
                if all(r.state == S.ACTIVE for r in members):
                    return
                if self.halted and not any(r.state in IN_FLIGHT for r in members):
                    return
                self.sleep(time.monotonic() - started)

    def approve_starts(self, members: list, live: dict[str, dict[str, Any]]) -> set[int]:
        """Which waiting nodes may start now (decided one by one, so the batch limit holds)."""
        approved: set[int] = set()
        if self.halted:
            return approved
        for row in members:
            if row.state in (S.PENDING, S.FAILED) and (not self.rolling or self.may_start(row, live, members, approved)):
                approved.add(row.pk)
        return approved

    # ------------------------------------------------------------------ one node
    def advance(self, row, live: dict[str, dict[str, Any]], may_start: bool) -> None:
        node = live.get(row.node_name)
        if node is None:
            if row.state != S.ACTIVE:
                self.rec.move(row, S.ACTIVE, "the node left the cluster; nothing to upgrade")
            return
        name = row.node_name
        if row.state in (S.PENDING, S.FAILED):
            if self.halted:
                return
            if row.state == S.PENDING and self.is_done(node):
                if is_cordoned(node) and annotations(node).get(CORDONED_BY) == self.marker:
                    self.api.uncordon(name)  # a run killed before it could record this node's walk
                self.rec.move(row, S.ACTIVE, f"already runs {self.target}")
                return
            if not may_start:
                return
            if not self.rolling:
                self.start_upgrade(row, node)
                return
            retry = row.state == S.FAILED
            if row.state == S.PENDING and is_cordoned(node) and annotations(node).get(CORDONED_BY) != self.marker:
                row.cordoned_before = True  # someone else's cordon: it stays
            message = "retrying after resume" if retry else (
                "was already cordoned; stays cordoned" if row.cordoned_before else "")
            if not self.drain_on:  # cordon and ask for the version in one request
                self.api.request_version(name, self.target, retry=bool(agent_failed(node, self.target)),
                                         cordon_by="" if row.cordoned_before else self.marker)
                self.rec.move(row, S.CORDONED, message)
                self.clock[name] = time.monotonic()
                self.rec.move(row, S.UPGRADING, f"{kubelet_version(node) or '?'} → {self.target}")
                return
            if not row.cordoned_before:
                self.api.cordon(name, self.marker)
            self.rec.move(row, S.CORDONED, message)
        if row.state == S.CORDONED:
            if self.halted:
                return
            if not row.cordoned_before and not is_cordoned(node):
                self.api.cordon(name, self.marker)  # a run that stopped half way may have left it uncordoned
            if not self.drain_on:
                self.start_upgrade(row, node)
                return
            self.drains[name] = drain.DrainState(name)
            self.rec.move(row, S.DRAINING)
        if row.state == S.DRAINING:
            if self.halted:
                return
            if not self.drain_step(row):
                return
        if row.state == S.DRAINED:
            if self.halted:
                return
            self.start_upgrade(row, node)
            return
        if row.state == S.UPGRADING:
            since = self.clock.setdefault(name, time.monotonic())
            if not self.is_done(node):
                self.watch_upgrade(row, node, since)
                return
            self.rec.move(row, S.UPGRADED, f"Ready on {self.target}")
        if row.state == S.UPGRADED:
            if self.rolling and not row.cordoned_before:
                self.api.uncordon(name)
            self.rec.move(row, S.ACTIVE, "uncordoned" if self.rolling and not row.cordoned_before else "")

    def is_done(self, node: dict[str, Any]) -> bool:
        return is_ready(node) and kubelet_version(node) == self.target

    def may_start(self, row, live: dict[str, dict[str, Any]], members: list, approved: set[int]) -> bool:
        """Starting this node must not put more nodes of its role out of service than the batch allows."""
        allowed = self.limits.get(row.role, 1)
        out = {n for n, obj in live.items() if rke_role(obj) == row.role and not is_ready(obj)}
        out |= {r.node_name for r in self.rows if r.role == row.role and r is not row and (
            r.state in HOLDING | IN_FLIGHT | {S.FAILED} or r.pk in approved)}
        if len(out | {row.node_name}) <= allowed:
            return True
        if not approved and not any(r.state in HOLDING | IN_FLIGHT for r in members):
            others = sorted(out - {row.node_name})
            self.pause(f"{row.role} node(s) {', '.join(others)} are out of service; upgrading {row.node_name} "
                       f"would take more than {allowed} {row.role} node(s) out at once ({LIMIT_NAMES[row.role]})")
        return False

    def start_upgrade(self, row, node: dict[str, Any]) -> None:
        self.api.request_version(row.node_name, self.target, retry=bool(agent_failed(node, self.target)))
        self.clock[row.node_name] = time.monotonic()
        self.rec.move(row, S.UPGRADING, f"{kubelet_version(node) or '?'} → {self.target}")

    def watch_upgrade(self, row, node: dict[str, Any], since: float) -> None:
        failure = agent_failed(node, self.target)
        if failure:
            self.fail(row, f"node {row.node_name} did not come back on {self.target}: {failure}")
            return
        if annotations(node).get(DESIRED) != self.target:  # a run killed before it could ask
            self.api.request_version(row.node_name, self.target)
        waited = time.monotonic() - since
        if waited > self.node_timeout:
            self.fail(row, self.timeout_reason(row, node))

    def timeout_reason(self, row, node: dict[str, Any]) -> str:
        ready = ready_condition(node)
        state = annotations(node).get(AGENT_STATE, "")
        detail = f"Ready={ready.get('status', 'Unknown')}"
        if ready.get("message"):
            detail += f" ({ready['message']})"
        detail += f", kubelet {kubelet_version(node) or '?'}"
        if not state or annotations(node).get("nodeagent.corral.io/observed-version") != self.target:
            detail += "; the node agent never picked up the request (is corral-node-agent running on it?)"
        else:
            detail += f"; node agent state {state}"
        return f"node {row.node_name} was not back Ready on {self.target} within {self.node_timeout} s: {detail}"

    def drain_step(self, row) -> bool:
        """One drain round; True once the node is drained."""
        state = self.drains.setdefault(row.node_name, drain.DrainState(row.node_name))
        try:
            step = drain.step(self.api, state, self.drain_options)
        except drain.DrainError as exc:
            self.fail(row, f"cannot drain node {row.node_name}: {exc}")
            return False
        for warning in step.warnings:
            self.rec.log(f"{row.role} node {row.node_name}: {warning}", "warning")
        if step.done:
            self.rec.move(row, S.DRAINED, f"{state.evicted} pod(s) evicted")
            return True
        timeout = int(self.drain_options.get("timeout") or 120)
        if state.elapsed() > timeout:
            self.fail(row, drain.timeout_reason(state, step.remaining, timeout))
        return False

    def fail(self, row, reason: str) -> None:
        self.rec.move(row, S.FAILED, reason)
        self.pause(reason)

    # ------------------------------------------------------------------ stopping
    def release(self) -> None:
        for row in self.rows:
            if row.state in (S.PENDING, S.ACTIVE):
                continue
            if self.rolling and not row.cordoned_before:
                self.api.uncordon(row.node_name)
            if row.state in HOLDING:
                self.rec.move(row, S.PENDING, "uncordoned: the upgrade stopped before this node was upgraded")
            elif row.state == S.UPGRADED:
                self.rec.move(row, S.ACTIVE, "uncordoned")
            elif self.rolling and not row.cordoned_before:
                self.rec.log(f"{row.role} node {row.node_name} ({row.state}): uncordoned")
