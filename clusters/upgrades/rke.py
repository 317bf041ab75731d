"""Rolling (and parallel) node operations on rke clusters: Corral cordons and drains, SUC changes the node.

Batches run one after another (see planning). In rolling mode each node of a batch walks
Active → Cordoned → [Draining → Drained →] Upgrading → Upgraded → Active; the batch is done
when all its nodes are Active again. Before a node starts, the engine checks that its role
would not have more nodes out of service (NotReady, cordoned or upgrading) than the batch
allows. Parallel mode — the behaviour before zero-downtime upgrades — changes every node of
a role at once with no cordon and no drain.

The Upgrading step is a system-upgrade-controller Plan per batch, ``corral-<id>-<k8s|kubelet>-b<batch>``
in namespace ``system-upgrade``: it selects exactly the batch's nodes that are ready for it
(``kubernetes.io/hostname In [...]``; a node joins the selector once it is cordoned and drained),
with concurrency = batch size, ``cordon: false`` (Corral cordoned already), the distribution's
upgrade image at the target version (or Corral's node-config image with the kubelet arguments),
and tolerations for control-plane and etcd taints. A node is Upgraded when SUC labelled it
``plan.upgrade.cattle.io/<plan>=<latestHash>`` and it is Ready (on the target version); a failed
SUC Job pauses the run with the Job's reason. The batch's Plan is deleted when the batch is done,
and every Plan of the run when it stops.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clusters.nodeops import hostname_selector, plan_body
from clusters.nodeops.api import CORDONED_BY
from clusters.nodeops.plans import PLAN_LABEL, hostname, job_attempts, job_failure, node_labels
from clusters.upgrades import drain
from clusters.upgrades.engine import Engine
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
DRAIN_EVERY = 0.25  # seconds between two drain rounds of one node (each lists the node's pods)
JOBS_EVERY = 2.0  # seconds between two looks at a batch's SUC Jobs (for failures)
HASH_EVERY = 0.5  # seconds between two reads of a Plan whose hash is not known yet


def annotations(node: dict[str, Any]) -> dict[str, str]:
    return (node.get("metadata") or {}).get("annotations") or {}


def ready_condition(node: dict[str, Any]) -> dict[str, Any]:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond
    return {}


def plan_name(upgrade, batch: int) -> str:
    """The Plan of one batch of one run (stable, so a resumed run finds it again)."""
    what = "kubelet" if upgrade.kind == "kubelet-args" else "k8s"
    return f"corral-{upgrade.pk}-{what}-b{batch}"


def run_selector(upgrade) -> str:
    return f"corral.io/upgrade={upgrade.pk}"


class RkeEngine(Engine):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.drain_on = self.rolling and bool(self.strategy.get("drain"))
        self.drain_options: dict[str, Any] = dict(self.strategy.get("node_drain_input") or {})
        self.clock: dict[str, float] = {}
        self.drains: dict[str, drain.DrainState] = {}
        self.drained_at: dict[str, float] = {}
        self.limits: dict[str, int] = {}
        self.marker = f"upgrade-{self.upgrade.pk}"
        self.targets: dict[str, set[str]] = {}  # plan -> hostnames written into its selector
        self.written: set[str] = set()  # plans created (or replaced) by this run
        self.hostnames: dict[str, str] = {}
        self.retry: set[str] = set()  # nodes whose earlier attempt failed: their old Jobs go first
        self.failures: dict[str, str] = {}
        self.jobs_checked: dict[str, float] = {}
        self.hash_checked: dict[str, float] = {}

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
        plan = plan_name(self.upgrade, members[0].batch)
        names = ", ".join(r.node_name for r in members)
        self.rec.log(f"Batch {number}/{total}: {role} {names}")
        message = f"batch {number}/{total} ({role}): {names}"[:255]
        with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL_CALLS, len(members)))) as pool:
            while True:
                self.tick(message)
                live = self.live()
                approved = self.approve_starts(members, live)
                # Nodes of a batch are independent: their API calls go out together.
                list(pool.map(self.advance, members, [live] * len(members), [r.pk in approved for r in members],
                              [plan] * len(members)))
                self.submit(plan, members)
                self.check_jobs(plan, members, live)
                self.rec.flush()
                if all(r.state == S.ACTIVE for r in members):
                    self.finish_batch(plan)
                    return
                if self.halted and not any(r.state in IN_FLIGHT for r in members):
                    return
                self.wait_change(self.next_wait(members))

    def next_wait(self, members: list) -> float:
        """Drains evict on their own clock; everything else wakes on a node change."""
        return DRAIN_EVERY if any(r.state == S.DRAINING for r in members) else 1.0

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
    def advance(self, row, live: dict[str, dict[str, Any]], may_start: bool, plan: str) -> None:
        node = live.get(row.node_name)
        if node is None:
            if row.state != S.ACTIVE:
                self.rec.move(row, S.ACTIVE, "the node left the cluster; nothing to change")
            return
        name = row.node_name
        self.hostnames[name] = hostname(node)
        just_cordoned = False
        if row.state in (S.PENDING, S.FAILED):
            if self.halted:
                return
            if row.state == S.PENDING and self.already_done(node, plan):
                if is_cordoned(node) and annotations(node).get(CORDONED_BY) == self.marker:
                    self.api.uncordon(name)  # a run killed before it could record this node's walk
                self.rec.move(row, S.ACTIVE, f"already {'runs' if self.versioned else 'has'} {self.goal}")
                return
            if not may_start:
                return
            if row.state == S.FAILED:
                self.retry.add(name)
            if not self.rolling:
                self.start_upgrade(row, node, plan)
                return
            retry = row.state == S.FAILED
            if row.state == S.PENDING and is_cordoned(node) and annotations(node).get(CORDONED_BY) != self.marker:
                row.cordoned_before = True  # someone else's cordon: it stays
            message = "retrying after resume" if retry else (
                "was already cordoned; stays cordoned" if row.cordoned_before else "")
            if not row.cordoned_before:
                self.api.cordon(name, self.marker)
                just_cordoned = True
            self.rec.move(row, S.CORDONED, message)
        if row.state == S.CORDONED:
            if self.halted:
                return
            if not row.cordoned_before and not is_cordoned(node) and not just_cordoned:
                self.api.cordon(name, self.marker)  # a run that stopped half way may have left it uncordoned
            if not self.drain_on:
                self.start_upgrade(row, node, plan)
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
            self.start_upgrade(row, node, plan)
            return
        if row.state == S.UPGRADING:
            since = self.clock.setdefault(name, time.monotonic())
            if not self.is_done(node, plan):
                self.watch_upgrade(row, node, since, plan)
                return
            self.rec.move(row, S.UPGRADED, f"Ready on {self.target}" if self.versioned else f"Ready with {self.goal}")
        if row.state == S.UPGRADED:
            if self.rolling and not row.cordoned_before:
                self.api.uncordon(name)
            self.rec.move(row, S.ACTIVE, "uncordoned" if self.rolling and not row.cordoned_before else "")

    def already_done(self, node: dict[str, Any], plan: str) -> bool:
        """Nothing to do on this node: it runs the target (versions) or finished this run's Plan."""
        if self.versioned:
            return is_ready(node) and kubelet_version(node) == self.target
        return self.op.done(node, plan, self.ops.hashes.get(plan))

    def is_done(self, node: dict[str, Any], plan: str) -> bool:
        labelled = PLAN_LABEL + plan in node_labels(node)
        if labelled and plan not in self.ops.hashes:
            now = time.monotonic()
            if now - self.hash_checked.get(plan, 0) >= HASH_EVERY:
                self.hash_checked[plan] = now
                self.ops.plan_hash(plan, refresh=True)
        return self.op.done(node, plan, self.ops.hashes.get(plan))

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

    def start_upgrade(self, row, node: dict[str, Any], plan: str) -> None:
        """The node joins its batch's Plan (written once per look, in ``submit``)."""
        self.failures.pop(row.node_name, None)
        self.clock[row.node_name] = time.monotonic()
        change = f"{kubelet_version(node) or '?'} → {self.target}" if self.versioned else f"→ {self.goal}"
        self.rec.move(row, S.UPGRADING, change)

    # ------------------------------------------------------------------ the batch's Plan
    def submit(self, plan: str, members: list) -> None:
        """Write the batch's Plan so it selects every node of the batch that reached Upgrading."""
        wanted = {self.hostnames.get(r.node_name, r.node_name) for r in members if r.state in IN_FLIGHT}
        known = self.targets.get(plan, set())
        if plan in self.written and wanted <= known:
            return
        for name in sorted(self.retry):
            if any(r.node_name == name and r.state == S.UPGRADING for r in members):
                self.ops.forget_jobs(plan, self.hostnames.get(name, name))
                self.retry.discard(name)
        hostnames = sorted(known | wanted)
        if not hostnames:
            return
        if plan in self.written:
            self.ops.target(plan, hostnames, len(members))
        else:
            body = plan_body(plan, self.op, selector=hostname_selector(hostnames), concurrency=len(members),
                             labels={"corral.io/upgrade": str(self.upgrade.pk), "corral.io/batch": str(members[0].batch)})
            self.ops.put_plan(body)
            self.written.add(plan)
            spec = body["spec"]
            self.rec.log(f"Plan system-upgrade/{plan}: {spec['upgrade']['image']}:{spec['version']}"
                         + (f" {' '.join(spec['upgrade']['args'])}" if spec["upgrade"].get("args") else "")
                         + f", concurrency {spec['concurrency']}, nodes {', '.join(hostnames)}")
        self.targets[plan] = set(hostnames)

    def check_jobs(self, plan: str, members: list, live: dict[str, dict[str, Any]]) -> None:
        """Every few seconds while nodes are upgrading: a failed SUC Job fails its node, and so does a
        failed attempt on a node that is not Ready (its kubelet is down: no retry can run there)."""
        upgrading = [r for r in members if r.state == S.UPGRADING]
        if not upgrading or plan not in self.written:
            return
        now = time.monotonic()
        if now - self.jobs_checked.get(plan, 0) < JOBS_EVERY:
            return
        self.jobs_checked[plan] = now
        jobs = self.ops.jobs(plan)
        for row in upgrading:
            job = jobs.get(self.hostnames.get(row.node_name, row.node_name))
            if job is None:
                continue
            reason = job_failure(job)
            attempts = int((job.get("status") or {}).get("failed") or 0)
            node = live.get(row.node_name)
            if not reason and attempts and node is not None and not is_ready(node):
                reason = (f"system-upgrade-controller job {job['metadata']['name']} failed {attempts} time(s) "
                          f"and the node is not Ready ({ready_condition(node).get('message') or 'no status'})")
            if reason:
                self.fail(row, f"node {row.node_name} did not come back on {self.goal}: {reason}")

    def finish_batch(self, plan: str) -> None:
        if plan in self.written or self.targets.get(plan):
            self.ops.delete_plan(plan)
            self.written.discard(plan)
            self.rec.log(f"Plan system-upgrade/{plan} deleted: its batch is done")

    def watch_upgrade(self, row, node: dict[str, Any], since: float, plan: str) -> None:
        waited = time.monotonic() - since
        if waited > self.node_timeout:
            self.fail(row, self.timeout_reason(row, node, plan))

    def timeout_reason(self, row, node: dict[str, Any], plan: str) -> str:
        ready = ready_condition(node)
        detail = f"Ready={ready.get('status', 'Unknown')}"
        if ready.get("message"):
            detail += f" ({ready['message']})"
        if self.versioned:
            detail += f", kubelet {kubelet_version(node) or '?'}"
        try:
            job = self.ops.jobs(plan).get(self.hostnames.get(row.node_name, row.node_name))
        except Exception:  # noqa: BLE001 - the reason is worth giving even without the Job
            job = None
        if job is None:
            detail += (f"; system-upgrade-controller started no job for it under Plan {plan} "
                       "(is system-upgrade-controller running?)")
        else:
            detail += f"; {job_attempts(job)}"
        return f"node {row.node_name} was not back Ready on {self.goal} within {self.node_timeout} s: {detail}"

    def drain_step(self, row) -> bool:
        """One drain round (at most every DRAIN_EVERY s); True once the node is drained."""
        now = time.monotonic()
        if now - self.drained_at.get(row.node_name, 0) < DRAIN_EVERY:
            return False
        self.drained_at[row.node_name] = now
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
        deleted = self.ops.delete_plans(run_selector(self.upgrade)) if self.ops else []
        if deleted:
            self.rec.log(f"Plans deleted: {', '.join(deleted)}")
        for row in self.rows:
            if row.state in (S.PENDING, S.ACTIVE):
                continue
            if self.rolling and not row.cordoned_before:
                self.api.uncordon(row.node_name)
            if row.state in HOLDING:
                self.rec.move(row, S.PENDING, "uncordoned: the run stopped before this node was changed")
            elif row.state == S.UPGRADED:
                self.rec.move(row, S.ACTIVE, "uncordoned")
            elif self.rolling and not row.cordoned_before:
                self.rec.log(f"{row.role} node {row.node_name} ({row.state}): uncordoned")
