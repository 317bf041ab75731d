"""Benchmark: zero-downtime rolling upgrades of rke clusters, through the API, on a real RQ worker.

What runs (see bench/_stack.py): a database of its own (``$DATABASE_URL``, else a fresh
``corral_bench`` on the local PostgreSQL, else a temporary SQLite file), Redis database 4 (flushed),
gunicorn on a free loopback port, two ``rqworker --worker-class portal.jobs.worker.Worker``
processes (``clusters`` / the other queues, as ``bin/up`` runs them) and the simulator
(``python -m kubesim serve``) in a process of its own. The benchmark only speaks HTTP to the
portal: ``POST /v3/clusters/`` imports a cluster, ``PUT /v3/clusters/{id}/config/`` sets the
upgrade strategy (drain on), ``POST /v3/clusters/{id}/upgrade/`` starts the upgrade and
``/v3/jobs/{id}/`` is polled until it ends; the node walk comes from ``/v3/upgrades/{id}/``.

Runs, every cluster rke v1.15.11 → v1.16.8 with a Deployment ``web`` of 3 replicas (spread over the
workers) and a PodDisruptionBudget minAvailable 2:

1. 9 nodes (3 etcd, 3 control plane, 3 workers), rolling, drain on;
2. the same, parallel mode (every node of a role at once, no drain), for comparison;
3. 100 nodes (3 etcd, 3 control plane, 94 workers), rolling, drain on, workers 10% at a time.

Ready replicas are followed with a watch on the app's pods through each run (every change seen).
For each run it prints the wall time against a floor: the sum over batches of the slowest node's
simulated replacement time (the simulator holds a node NotReady for ``upgrade_down`` while its
Kubernetes is replaced; SUC's Job pods start at once and the kubelet is Ready as soon as it is
back, so that is all a node's replacement takes in simulated time). Drain time is shown apart
(per batch the longest Draining → Drained, summed), as are the time before the first batch
(installing system-upgrade-controller) and API requests per node upgraded (the job result's
``api_requests`` / nodes). Simulated durations are the simulator's own (``kubesim.cluster.Timings``)
scaled by ``--time-scale`` (default 0.2: ``upgrade_down`` 10 s → 2 s) so all of it takes a few minutes.

    .venv/bin/python bench/upgrade_zero_downtime.py
    .venv/bin/python bench/upgrade_zero_downtime.py --time-scale 0.5 --skip-small

Exits non-zero when an upgrade does not succeed, or a rolling run lets ready replicas drop below 2.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stack import ReadyWatch, SimProcess, Stack, parse_time  # noqa: E402
from kubesim.cluster import Timings  # noqa: E402

SOURCE, TARGET = "v1.15.11", "v1.16.8"
MIN_AVAILABLE = 2
# Simulated seconds before --time-scale; what is not named is the simulator's default (Timings).
# The 9-node clusters renew leases every second and go NotReady after 5 s of silence (less than
# upgrade_down), as in the upgrade tests: a node being replaced is NotReady long enough for its pods to
# turn NotReady, so parallel mode's downtime shows. The 100-node cluster keeps every default.
SMALL_TIMINGS = {"heartbeat": 1, "node_grace": 5, "node_status": 60}
LARGE_TIMINGS: dict[str, float] = {}
FINISHED = ("succeeded", "failed", "cancelled", "paused")


def rke(name: str, nodes: dict[str, int], timings: dict[str, float]) -> dict[str, Any]:
    return {"name": name, "kind": "rke", "version": SOURCE, "nodes": nodes, "timings": timings,
            "workloads": [{"deployment": {"name": "web", "namespace": "default", "replicas": 3, "image": "nginx:1.17.9"},
                           "pdb": {"name": "web", "minAvailable": MIN_AVAILABLE}}]}


def effective_timings(fleet: dict, name: str) -> Timings:
    """A cluster's timings as the simulator computes them: defaults, fleet defaults, the cluster's, × time_scale."""
    defaults = fleet.get("defaults") or {}
    spec = next(c for c in fleet["clusters"] if c["name"] == name)
    merged = {**(defaults.get("timings") or {}), **(spec.get("timings") or {})}
    return Timings.from_dict(merged).scaled(float(defaults.get("time_scale", 1.0)))


def replacement_seconds(t: Timings) -> float:
    """Simulated time one node takes to be replaced (kubesim/controllers/upgrades.py ``begin_upgrade``):
    NotReady for ``upgrade_down``, then Ready on the new version at once. SUC's Job pod has no
    ``pod_start`` (host pods start when bound) and needs no heartbeat to report Ready."""
    return t.upgrade_down


def describe_timings(t: Timings, scale: float) -> str:
    base = Timings.from_dict({})
    parts = []
    for name in ("upgrade_down", "pod_start", "pod_stop", "heartbeat", "node_grace"):
        parts.append(f"{name} {getattr(t, name):g} s")
    changed = [n for n in ("heartbeat", "node_grace", "node_status")
               if abs(getattr(t, n) - getattr(base, n) * scale) > 1e-9]
    note = f" (set: {', '.join(changed)})" if changed else " (simulator defaults)"
    return ", ".join(parts) + note


class Run:
    """One upgrade through the API, followed to its end, and what its records say."""

    def __init__(self, stack: Stack, sim: SimProcess, fleet: dict, name: str, mode: str, strategy: dict[str, Any]):
        self.stack, self.sim, self.fleet, self.name, self.mode = stack, sim, fleet, name, mode
        self.strategy = {"mode": mode, **strategy}
        self.timings = effective_timings(fleet, name)

    def execute(self, timeout: float) -> Run:
        api = self.stack.api
        cluster = api.call("POST", "/clusters/", {"name": self.name, "kubeconfig": self.sim.kubeconfig(self.name)},
                           expect=(201,))
        cid = cluster["id"]
        doc = api.get(f"/clusters/{cid}/config/")["document"]
        doc["upgrade_strategy"].update(self.strategy)
        saved = api.call("PUT", f"/clusters/{cid}/config/", {"document": doc, "comment": "benchmark strategy"})
        if saved.get("upgrade_job"):
            raise SystemExit(f"{self.name}: saving the strategy started a job")
        self.watch = ReadyWatch(self.sim.kubeconfig(self.name)).begin()
        try:
            self.posted = time.time()
            job = api.call("POST", f"/clusters/{cid}/upgrade/", {"kubernetes_version": TARGET}, expect=(202,))
            deadline = time.monotonic() + timeout
            while job["status"] not in FINISHED:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{self.name}: the upgrade job is still {job['status']} after {timeout:.0f} s "
                                     f"({job.get('progress_message')})")
                time.sleep(0.5)
                job = api.get(f"/jobs/{job['id']}/")
        finally:
            self.watch.stop()
        self.job = job
        upgrade = api.pages(f"/upgrades/?cluster={cid}")[0]
        self.upgrade = api.get(f"/upgrades/{upgrade['id']}/")
        self.log = self._log(job["id"])
        return self

    def _log(self, job_id: str) -> list[dict[str, Any]]:
        lines, after = [], 0
        while True:
            page = self.stack.api.get(f"/jobs/{job_id}/log/?after={after}")
            if not page:
                return lines
            lines.extend(page)
            after = page[-1]["id"]

    @property
    def succeeded(self) -> bool:
        return self.job["status"] == "succeeded"

    def check_nodes(self) -> list[str]:
        """What the cluster itself says afterwards: every node on the target and schedulable."""
        from kubernetes import client

        from clusters.upgrades.testing import client_for

        api = client_for(self.sim.kubeconfig(self.name))
        try:
            nodes = client.CoreV1Api(api).list_node().items
        finally:
            api.close()
        problems = [f"{n.metadata.name} runs {n.status.node_info.kubelet_version}" for n in nodes
                    if n.status.node_info.kubelet_version != TARGET]
        problems += [f"{n.metadata.name} is still cordoned" for n in nodes if n.spec.unschedulable]
        return problems

    def report(self) -> None:
        job, nodes = self.job, self.upgrade["nodes"]
        result = job.get("result") or {}
        started, finished = parse_time(job["started_at"]), parse_time(job["finished_at"])
        wall = (finished or time.time()) - self.posted
        per_node = replacement_seconds(self.timings)
        batches: dict[int, list[dict[str, Any]]] = {}
        for row in nodes:
            batches.setdefault(row["batch"], []).append(row)
        floor = drain = upgrading = spans = 0.0
        sizes = []
        first_start = last_end = None
        for number in sorted(batches):
            rows = batches[number]
            sizes.append(len(rows))
            floor += max(per_node for _ in rows)
            drain += max((self._span(r, "draining", "drained") for r in rows), default=0.0)
            upgrading += max((self._span(r, "upgrading", "upgraded") for r in rows), default=0.0)
            times = [parse_time(t["at"]) for r in rows for t in r["transitions"]]
            if times:
                spans += max(times) - min(times)
                first_start = min(times) if first_start is None else min(first_start, min(times))
                last_end = max(times) if last_end is None else max(last_end, max(times))
        batch_line = next((parse_time(line["at"]) for line in self.log if line["message"].startswith("Batch 1/")), None)
        first_start = batch_line or first_start
        prepare = (first_start - started) if first_start and started else 0.0
        queued = (started - self.posted) if started else 0.0
        tail = (finished - last_end) if finished and last_end else 0.0
        installed = any("installing it (rancher/system-upgrade-controller" in line["message"] for line in self.log)
        requests = result.get("api_requests")
        count = result.get("nodes") or len(nodes)
        title = (f"{count}-node rke cluster {self.name}: {self.mode}"
                 + (", drain on" if self.mode == "rolling" and self.strategy.get("drain") else ", no drain")
                 + (f", workers {self.strategy['max_unavailable_worker']} at a time"
                    if self.mode == "rolling" and "max_unavailable_worker" in self.strategy else ""))
        print(title)
        print(f"  result               job {job['status']}" + (f": {job.get('error')}" if not self.succeeded else "")
              + f"; upgrade {self.upgrade['state']}")
        print(f"  wall time          {wall:7.1f} s   POST /upgrade/ → job finished_at")
        print(f"  floor              {floor:7.1f} s   Σ over {len(sizes)} batches of the slowest node's simulated "
              f"replacement = {len(sizes)} × upgrade_down {per_node:g} s")
        # the engine's Drained transition says "N pod(s) evicted"
        evicted = sum(int(t["message"].split(" ", 1)[0]) for r in nodes for t in r["transitions"]
                      if t["to_state"] == "drained" and t["message"].split(" ", 1)[0].isdigit())
        print(f"  drain (apart)      {drain:7.1f} s   Σ over batches of the longest Draining → Drained "
              f"({evicted} pods evicted through the eviction API)")
        over = (wall / floor - 1) * 100 if floor else float("nan")
        over_drain = (wall / (floor + drain) - 1) * 100 if floor + drain else float("nan")
        print(f"  overhead           {over:+7.0f} %   over the floor ({over_drain:+.0f} % over floor + drain)")
        print(f"  where it went        queued {queued:.1f} s, before batch 1 {prepare:.1f} s"
              + (" (installing system-upgrade-controller)" if installed else "")
              + f", batches {spans:.1f} s (of which Upgrading → Upgraded {upgrading:.1f} s, drain {drain:.1f} s), "
              f"after the last batch {tail:.1f} s")
        print(f"  batches            {len(sizes):7d}     sizes {' '.join(map(str, sizes))}")
        if requests is not None:
            print(f"  API requests       {requests / count:7.1f}     per node upgraded ({requests} requests to the "
                  f"cluster / {count} nodes, job result api_requests)")
        else:
            print("  API requests           n/a     (the job result has no api_requests)")
        print(f"  ready replicas     {self.watch.minimum:7d}     minimum (minAvailable {MIN_AVAILABLE}); "
              f"{self.watch.events} pod events watched, {len(self.watch.samples) - 1} changes of the count, "
              f"{self.watch.errors} watch errors")

    @staticmethod
    def _span(row: dict[str, Any], start: str, end: str) -> float:
        at = {t["to_state"]: parse_time(t["at"]) for t in row["transitions"]}
        return at[end] - at[start] if start in at and end in at else 0.0


def run_case(stack: Stack, fleet: dict, runs: list[tuple[str, str, dict[str, Any]]], timeout: float,
             tag: str) -> list[Run]:
    started = time.monotonic()
    sim = SimProcess(fleet, stack.work, tag)
    print(f"(simulator up in {time.monotonic() - started:.1f} s: {', '.join(c['name'] for c in fleet['clusters'])})")
    done = []
    try:
        for name, mode, strategy in runs:
            run = Run(stack, sim, fleet, name, mode, strategy).execute(timeout)
            run.report()
            done.append(run)
            if not run.succeeded:
                break
            problems = run.check_nodes()
            if problems:
                print(f"  cluster afterwards   NOT DONE: {'; '.join(problems[:5])}")
                run.job["status"] = "incomplete"
            else:
                print(f"  cluster afterwards   every node on {TARGET} and schedulable")
            print()
    finally:
        sim.stop()
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=0.2, help="multiplies every simulated duration")
    parser.add_argument("--workers", type=int, default=94, help="worker nodes of the large cluster")
    parser.add_argument("--skip-small", action="store_true", help="only the 100-node run")
    parser.add_argument("--skip-large", action="store_true", help="only the 9-node runs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds one upgrade may take")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleanup runs on SIGTERM as on Ctrl-C

    begun = time.monotonic()
    runs: list[Run] = []
    with Stack() as stack:
        print(f"Corral: gunicorn {stack.api.base}, 2 rqworker processes (portal.jobs.worker.Worker), "
              f"database {stack.db.what}")
        drain = {"drain": True, "node_drain_input": {"timeout": 120}}
        if not args.skip_small:
            small = {"defaults": {"time_scale": args.time_scale},
                     "clusters": [rke(f"zdt-{m}", {"etcd": 3, "controlplane": 3, "worker": 3}, SMALL_TIMINGS)
                                  for m in ("rolling", "parallel")]}
            t = effective_timings(small, "zdt-rolling")
            print(f"9-node clusters: simulated timings × {args.time_scale:g}: {describe_timings(t, args.time_scale)}")
            runs += run_case(stack, small, [("zdt-rolling", "rolling", drain), ("zdt-parallel", "parallel", {})],
                             args.timeout, "small")
        if not args.skip_large and all(r.succeeded for r in runs):
            name = "hundred"
            large = {"defaults": {"time_scale": args.time_scale},
                     "clusters": [rke(name, {"etcd": 3, "controlplane": 3, "worker": args.workers}, LARGE_TIMINGS)]}
            t = effective_timings(large, name)
            print(f"{args.workers + 6}-node cluster: simulated timings × {args.time_scale:g}: "
                  f"{describe_timings(t, args.time_scale)}")
            runs += run_case(stack, large, [(name, "rolling", {**drain, "max_unavailable_worker": "10%"})],
                             args.timeout, "large")
    print(f"total {time.monotonic() - begun:.0f} s (stack, simulators and clean-up included)")
    failed = [r.name for r in runs if r.job["status"] != "succeeded"]
    dropped = [r.name for r in runs if r.mode == "rolling" and r.watch.minimum < MIN_AVAILABLE]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    if dropped:
        print(f"FAILED: ready replicas below {MIN_AVAILABLE} during rolling upgrade(s) of {', '.join(dropped)}")
    return 1 if failed or dropped or not runs else 0


if __name__ == "__main__":
    raise SystemExit(main())
