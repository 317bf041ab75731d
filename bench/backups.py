"""Benchmark: etcd snapshot and restore of one 50-node cluster, and snapshots of a 200-cluster fleet.

What runs is the path a user takes: HTTP to ``/v3/`` (gunicorn) → the ``backups`` queue → an RQ worker
process → system-upgrade-controller Plans on the cluster, where the simulator plays the
``corral/etcd-snapshot`` image (``bench/_stack.py``: a database and Redis db 4 of its own, gunicorn, the
two workers of ``bin/up``; ``python -m kubesim serve`` in a process of its own).

1. One rke cluster of 50 nodes (3 etcd, 3 control plane, 44 workers) gets ``--objects`` objects (50
   namespaces of ConfigMaps, Secrets and Services, created through the Kubernetes API with the official
   client), is imported with ``POST /v3/clusters/``, snapshotted with ``POST /v3/clusters/{id}/snapshot/``
   (nodes' disks only) and, after 100 more ConfigMaps, restored with ``POST /v3/snapshots/{id}/restore/``
   (parts "etcd"). Printed: wall times, the jobs' own durations, the archive size, the object counts,
   the restore's steps; the 100 later objects must be gone and the report's difference empty.
2. ``--clusters`` small rke clusters (1 etcd, 1 control plane, 1 worker, the simulator's defaults) are
   imported through the API, then a snapshot of each is posted at once; the wall time until all are
   Ready, with two worker processes on the ``backups`` queue (bin/up's second worker, which also takes
   default, scans and catalog, plus one started for this part). No snapshot may fail.

Each number is printed with its floor: what the simulated cluster and the portal's polling make
unavoidable (see ``floors()``). The clusters run system-upgrade-controller from the start (as after
the snapshot Corral takes on import, which would have installed it); that import-time snapshot is off
(``CORRAL_SNAPSHOT_AFTER_IMPORT=0``) so only the snapshots measured here run.

    .venv/bin/python bench/backups.py                      # 5,000 objects, 200 clusters (several minutes)
    .venv/bin/python bench/backups.py --clusters 50        # a quicker fleet
    .venv/bin/python bench/backups.py --skip-fleet         # the 50-node cluster only

Exits non-zero when a snapshot or the restore fails, the later objects survive the restore, the
restore's report shows a difference, or a fleet snapshot is not Ready in time.
"""
from __future__ import annotations

import argparse
import base64
import math
import os
import secrets
import signal
import statistics
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._stack import WORKER, SimProcess, Stack, parse_time  # noqa: E402
from kubesim.cluster import Timings  # noqa: E402

NAMESPACES = 50
LATER = 100
BIG = "backup-big"
BIG_NODES = {"etcd": 3, "controlplane": 3, "worker": 44}
SMALL_NODES = {"etcd": 1, "controlplane": 1, "worker": 1}
LABEL = "corral-bench"
SNAPSHOT_END = ("ready", "failed", "missing")
RESTORE_END = ("succeeded", "failed")
POLL = 0.25  # backups/etcd.py POLL: how often a step's SUC Jobs are read (restore.py's waits use 0.25 s too)


# ---------------------------------------------------------------------- helpers
def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def effective_timings(fleet: dict) -> Timings:
    defaults = fleet.get("defaults") or {}
    return Timings.from_dict(defaults.get("timings") or {}).scaled(float(defaults.get("time_scale", 1.0)))


def job_log(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    lines, after = [], 0
    while True:
        page = stack.api.get(f"/jobs/{job_id}/log/?after={after}")
        if not page:
            return lines
        lines.extend(page)
        after = page[-1]["id"]


def sim_objects(sim: SimProcess, name: str) -> Counter:
    """What the cluster's etcd holds, by resource: the simulator's own snapshot through its control API."""
    from kubesim import etcd

    req = urllib.request.Request(f"{sim.base_url}/_sim/clusters/{name}/snapshot", data=b"", method="POST")
    with urllib.request.urlopen(req, context=sim.ssl, timeout=60) as resp:
        blob = resp.read()
    return Counter(key for key, _ in etcd.verify(blob)["objects"])


class Kube:
    """The official Kubernetes client against one simulated cluster, one ApiClient per thread."""

    def __init__(self, kubeconfig: str):
        self.kubeconfig = kubeconfig
        self.local = threading.local()
        # The client writes the kubeconfig's CA to a temporary file it shares by content: a second thread
        # may read it before the first has written it (X509: NO_CERTIFICATE_OR_CRL_FOUND). One at a time.
        self.lock = threading.Lock()

    def core(self):
        from kubernetes import client

        from clusters.upgrades.testing import client_for

        if not hasattr(self.local, "core"):
            with self.lock:
                self.local.core = client.CoreV1Api(client_for(self.kubeconfig))
        return self.local.core

    def create(self, kind: str, namespace: str, name: str, labels: dict[str, str]) -> None:
        core = self.core()
        meta = {"name": name, "namespace": namespace, "labels": labels}
        if kind == "configmap":
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                    "data": {"app.properties": f"name={name}\nreplicas=3\nlog.level=info\n" + "x" * 120}}
            core.create_namespaced_config_map(namespace, body)
        elif kind == "secret":
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
                    "data": {"token": base64.b64encode(secrets.token_bytes(48)).decode()}}
            core.create_namespaced_secret(namespace, body)
        else:
            body = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
                    "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
            core.create_namespaced_service(namespace, body)

    def count(self, selector: str) -> dict[str, int]:
        core = self.core()
        return {"configmaps": len(core.list_config_map_for_all_namespaces(label_selector=selector).items),
                "secrets": len(core.list_secret_for_all_namespaces(label_selector=selector).items),
                "services": len(core.list_service_for_all_namespaces(label_selector=selector).items)}


def plan_objects(total: int) -> tuple[list[str], list[tuple[str, str, str]]]:
    """``total`` objects: 50 namespaces, then ConfigMaps, Secrets and Services (2:2:1) spread over them."""
    spaces = max(1, min(NAMESPACES, total // 10))
    names = [f"bench-{i:02d}" for i in range(spaces)]
    kinds = ("configmap", "configmap", "secret", "secret", "service")
    items = [(kinds[i % len(kinds)], names[i % spaces], f"{kinds[i % len(kinds)][:3]}-{i:05d}")
             for i in range(max(0, total - spaces))]
    return names, items


def create_all(kube: Kube, items: list[tuple[str, str, str]], labels: dict[str, str], threads: int = 4) -> float:
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: kube.create(*item, labels), items))
    return time.monotonic() - started


def wait_snapshot(stack: Stack, snap: dict[str, Any], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while snap["state"] not in SNAPSHOT_END:
        if time.monotonic() > deadline:
            raise SystemExit(f"snapshot {snap['name']} is still {snap['state']} after {timeout:.0f} s")
        time.sleep(0.1)
        snap = stack.api.get(f"/snapshots/{snap['id']}/")
    snap["seen_at"] = time.time()
    return snap


# ---------------------------------------------------------------------- floors
def floors(t: Timings) -> dict[str, tuple[float, float, str]]:
    """The unavoidable part of each number: (simulated seconds, the most polling can add, in words).

    A save (or verify) Plan: SUC (kubesim/controllers/upgrades.py) makes the Job in the controller pass
    that sees the Plan; the Job's pod is a host pod, run when bound (no pod_start, no job_run: those are
    for ordinary pods, kubesim/controllers/kubelet.py sync_pods), and ``save`` runs at once
    (controllers/etcdsnapshot.py): 0 s of simulated time. EtcdNodes.wait (backups/etcd.py) reads the Jobs
    right after writing the Plan, then every POLL: the step is seen done 0 to POLL after it is.
    A restore (parts etcd, backups/restore.py): verify (as a save), cluster-reset (_wait_reset polls the
    marker every 0.25 s; the reset itself is immediate), the other etcd nodes rejoin through one Plan of
    concurrency 1, each NotReady for kubelet_restart (etcdsnapshot.py ``rejoin``), one after the other.
    Heartbeats do not gate it: Cluster.on_restore re-registers only nodes the restored store lacks and
    the lifecycle controller's clock restarts, so the restored Ready status stands; only parts
    kubernetes/all wait for a heartbeat of every node (_settled_versions).
    """
    etcd = BIG_NODES["etcd"]
    rejoin = (etcd - 1) * t.kubelet_restart
    return {
        "snapshot": (0.0, POLL, "0 s simulated (SUC makes the Job in the pass that sees the Plan, the host pod runs "
                                f"when bound, save at once); polling adds 0..{POLL:g} s (EtcdNodes.wait, POLL)"),
        "restore": (rejoin, 3 * POLL, f"{etcd - 1} etcd nodes rejoin one at a time (concurrency 1) × kubelet_restart "
                                      f"{t.kubelet_restart:g} s; verify and cluster-reset 0 s simulated; polling adds "
                                      f"0..{POLL:g} s per step (3 steps); heartbeat {t.heartbeat:g} s does not gate "
                                      "parts=etcd"),
    }


# ---------------------------------------------------------------------- part 1
def big_cluster(stack: Stack, args: argparse.Namespace) -> list[str]:
    problems: list[str] = []
    fleet = {"defaults": {"time_scale": args.time_scale},
             "clusters": [{"name": BIG, "kind": "rke", "nodes": BIG_NODES, "system_upgrade_controller": True}]}
    t = effective_timings(fleet)
    floor = floors(t)
    started = time.monotonic()
    sim = SimProcess(fleet, stack.work, "big")
    print(f"(simulator up in {time.monotonic() - started:.1f} s: {BIG}, {sum(BIG_NODES.values())} nodes "
          f"{BIG_NODES}; timings × {args.time_scale:g}: kubelet_restart {t.kubelet_restart:g} s, "
          f"heartbeat {t.heartbeat:g} s)")
    try:
        kubeconfig = sim.kubeconfig(BIG)
        kube = Kube(kubeconfig)
        before = sum(sim_objects(sim, BIG).values())
        spaces, items = plan_objects(args.objects)
        labels = {LABEL: "objects"}
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda ns: kube.core().create_namespace(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}), spaces))
        create_all(kube, items, labels)
        took = time.monotonic() - t0
        made = kube.count(f"{LABEL}=objects")
        held = sim_objects(sim, BIG)
        print(f"objects            {len(spaces) + len(items):7d}     created through the Kubernetes API in {took:.1f} s "
              f"({(len(spaces) + len(items)) / took:.0f}/s, 4 threads): {len(spaces)} namespaces, "
              + ", ".join(f"{n} {k}" for k, n in made.items()))
        print(f"cluster holds      {sum(held.values()):7d}     objects in etcd ({before} before: nodes, leases, system "
              f"objects); top: " + ", ".join(f"{k} {n}" for k, n in held.most_common(6)))

        cluster = stack.api.call("POST", "/clusters/", {"name": BIG, "kubeconfig": kubeconfig}, expect=(201,))
        posted = time.time()
        snap = stack.api.call("POST", f"/clusters/{cluster['id']}/snapshot/", {"target": None}, expect=(202,))
        snap = wait_snapshot(stack, snap, args.timeout)
        job = stack.api.get(f"/jobs/{snap['job']}/")
        started_at, finished_at = parse_time(job["started_at"]), parse_time(job["finished_at"])
        print(f"\nsnapshot of {BIG}: {snap['state']}" + (f" ({snap['reason']})" if snap["state"] != "ready" else "")
              + f", {snap['name']} on {snap['node']}")
        if snap["state"] != "ready":
            return [f"snapshot of {BIG}: {snap['state']}: {snap['reason']}"]
        wall = (finished_at or snap["seen_at"]) - posted
        print(f"  wall time        {wall:7.2f} s   POST /snapshot/ → job finished_at (Ready seen by polling the API "
              f"after {snap['seen_at'] - posted:.2f} s)")
        print(f"  job duration     {finished_at - started_at:7.2f} s   job started_at → finished_at "
              f"(queued {started_at - posted:.2f} s before a worker took it)")
        print(f"  floor            {floor['snapshot'][0]:7.2f} s   (+ ≤ {floor['snapshot'][1]:g} s polling) "
              f"{floor['snapshot'][2]}")
        print(f"  archive size     {snap['size']:7d} B   snapshot size ({snap['size'] / 1024:.0f} KiB, zlib JSON of "
              f"every etcd key), etcd revision {snap['etcd_revision']}")
        print("  manifest objects     n/a     /v3/snapshots/{id}/ carries the ETCDSnapshotFile record, not the "
              "manifest's inventory (see the restore's objects_in_snapshot below)")
        for line in job_log(stack, job["id"]):
            print(f"    +{parse_time(line['at']) - started_at:6.2f} s  {line['message']}")

        # 100 objects the snapshot does not hold, then the restore
        later = [("configmap", spaces[i % len(spaces)], f"later-{i:03d}") for i in range(LATER)]
        create_all(kube, later, {LABEL: "later"})
        print(f"\n{kube.count(f'{LABEL}=later')['configmaps']} ConfigMaps created after the snapshot (label {LABEL}=later)")
        posted = time.time()
        restore = stack.api.call("POST", f"/snapshots/{snap['id']}/restore/", {"parts": "etcd"}, expect=(202,))
        deadline = time.monotonic() + args.timeout
        while restore["state"] not in RESTORE_END:
            if time.monotonic() > deadline:
                raise SystemExit(f"the restore is still {restore['state']} after {args.timeout:.0f} s "
                                 f"({restore.get('progress_message')})")
            time.sleep(0.1)
            restore = stack.api.get(f"/restores/{restore['id']}/")
        seen = time.time()
        job = stack.api.get(f"/jobs/{restore['job']}/")
        started_at, finished_at = parse_time(job["started_at"]), parse_time(job["finished_at"])
        report = restore.get("report") or {}
        print(f"restore of {snap['name']} (parts etcd): {restore['state']}"
              + (f" ({restore['reason']})" if restore["state"] != "succeeded" else ""))
        wall = (finished_at or seen) - posted
        print(f"  wall time        {wall:7.2f} s   POST /restore/ → job finished_at (seen by polling after "
              f"{seen - posted:.2f} s)")
        if started_at and finished_at:
            print(f"  job duration     {finished_at - started_at:7.2f} s   (queued {started_at - posted:.2f} s)")
        print(f"  floor            {floor['restore'][0]:7.2f} s   (+ ≤ {floor['restore'][1]:g} s polling) "
              f"{floor['restore'][2]}")
        for i, step in enumerate(report.get("steps") or [], 1):
            print(f"  step {i}           {step}")
        if started_at:
            for line in job_log(stack, job["id"]):
                print(f"    +{parse_time(line['at']) - started_at:6.2f} s  {line['message']}")
        diff = report.get("difference") or {}
        missing, extra = diff.get("missing") or [], diff.get("extra") or []
        print(f"  objects          {report.get('objects_in_snapshot', 'n/a')} compared from the snapshot's inventory, "
              f"{report.get('objects_now', 'n/a')} on the cluster now (both without events, leases, endpoints, nodes, "
              f"controller-made pods/replicasets/jobs and Corral's own snapshot machinery)")
        print(f"  difference       {len(missing)} missing, {len(extra)} extra"
              + (f": missing {missing[:5]}, extra {extra[:5]}" if missing or extra else ""))
        after_later = kube.count(f"{LABEL}=later")["configmaps"]
        after_objects = kube.count(f"{LABEL}=objects")
        print(f"  later objects    {after_later} of {LATER} left (must be 0); the snapshot's own: "
              + ", ".join(f"{n} {k}" for k, n in after_objects.items()))
        if restore["state"] != "succeeded":
            problems.append(f"restore {restore['state']}: {restore['reason']}")
        if missing or extra:
            problems.append(f"the restore's report shows a difference: {len(missing)} missing, {len(extra)} extra")
        if after_later:
            problems.append(f"{after_later} ConfigMaps created after the snapshot survived the restore")
        if after_objects != made:
            problems.append(f"the snapshot's objects after the restore: {after_objects}, before: {made}")
    finally:
        sim.stop()
    return problems


# ---------------------------------------------------------------------- part 2
def add_backup_workers(stack: Stack, extra: int) -> None:
    from rq import Worker

    for i in range(extra):
        stack._spawn(f"rqworker-backups-{i + 2}", [*WORKER, "backups"])
    pids = {p.pid for n, p in stack.procs if n.startswith("rqworker")}
    deadline = time.monotonic() + 60
    while not pids <= {w.pid for w in Worker.all(connection=stack.redis)}:
        if time.monotonic() > deadline:
            raise SystemExit("the extra backups worker did not register in 60 s")
        time.sleep(0.2)


def fleet(stack: Stack, args: argparse.Namespace) -> list[str]:
    n = args.clusters
    spec = {"defaults": {"time_scale": args.time_scale},
            "clusters": [{"name": "bk-{i:03d}", "count": n, "kind": "rke", "nodes": SMALL_NODES,
                          "system_upgrade_controller": True}]}
    names = [f"bk-{i:03d}" for i in range(n)]
    started = time.monotonic()
    sim = SimProcess(spec, stack.work, "fleet")
    print(f"\n(simulator up in {time.monotonic() - started:.1f} s: {n} rke clusters of {sum(SMALL_NODES.values())} "
          f"nodes {SMALL_NODES})")
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda name: stack.api.call(
                "POST", "/clusters/", {"name": name, "kubeconfig": sim.kubeconfig(name)}, expect=(201,))["id"], names))
        took = time.monotonic() - t0
        print(f"import             {took:7.1f} s   {n} × POST /v3/clusters/ (4 client threads; no bulk import in the "
              f"API), {n / took:.1f} clusters/s")
        add_backup_workers(stack, args.backup_workers - 1)
        print(f"workers on backups {args.backup_workers:7d}     bin/up's second worker (default scans backups catalog) "
              f"+ {args.backup_workers - 1} started for this part (backups only); the clusters worker does not take it")

        def ended() -> dict[str, int]:
            return {s: stack.api.get(f"/snapshots/?state={s}&page_size=1")["count"] for s in SNAPSHOT_END}

        baseline = ended()  # part 1's snapshot
        first = time.time()
        with ThreadPoolExecutor(4) as pool:
            snaps = list(pool.map(lambda cid: stack.api.call(
                "POST", f"/clusters/{cid}/snapshot/", {"target": None}, expect=(202,)), ids))
        posted = time.time() - first
        deadline = time.monotonic() + args.timeout
        while True:
            done = {s: c - baseline[s] for s, c in ended().items()}
            if sum(done.values()) >= n:
                break
            if time.monotonic() > deadline:
                print(f"NOT DONE after {args.timeout:.0f} s: {done}")
                break
            time.sleep(1)
        seen = time.time()
        wanted = {s["id"] for s in snaps}
        rows = [s for s in stack.api.pages("/snapshots/?page_size=1000") if s["id"] in wanted]
        jobs = {j["id"]: j for j in stack.api.pages("/jobs/?kind=backups.snapshot&page_size=1000")}
        ready = [s for s in rows if s["state"] == "ready"]
        failed = [s for s in rows if s["state"] != "ready"]
        mine = [jobs[s["job"]] for s in rows if s.get("job") in jobs]
        finish = [parse_time(j["finished_at"]) for j in mine if j.get("finished_at")]
        runs = [parse_time(j["finished_at"]) - parse_time(j["started_at"]) for j in mine
                if j.get("finished_at") and j.get("started_at")]
        end = max(finish) if len(finish) == n else seen
        wall = end - first
        polling = ceil_div(n, args.backup_workers) * POLL
        print(f"\n{n} snapshots posted at once ({posted:.1f} s to post them all, 4 client threads)")
        print(f"  wall time        {wall:7.1f} s   first POST → last job finished_at ({len(ready)} Ready, "
              f"{len(failed)} not)")
        print(f"  throughput       {len(ready) / wall * 60:7.1f}     snapshots per minute "
              f"({len(ready) / wall:.2f}/s)")
        print(f"  failures         {len(failed):7d}" + (": " + "; ".join(f"{s['cluster_name']}: {s['state']} "
                                                                       f"{s['reason']}" for s in failed[:5])
                                                        if failed else ""))
        if runs:
            print(f"  job duration       p50 {statistics.median(runs):.2f} s, p90 {pct(runs, 0.9):.2f} s, max "
                  f"{max(runs):.2f} s, mean {statistics.mean(runs):.2f} s (started_at → finished_at); "
                  f"Σ {sum(runs):.0f} s of job time over {wall:.0f} s wall = {sum(runs) / wall:.2f} workers busy")
        by_worker = Counter((j.get("worker") or "?").split(" (pid", 1)[0] for j in mine)  # a work horse per job
        print("  per worker         " + ", ".join(f"{w[:8]}…: {c} jobs" for w, c in sorted(by_worker.items())))
        sizes = [s["size"] for s in ready if s.get("size")]
        if sizes:
            print(f"  archive size       {statistics.median(sizes) / 1024:.0f} KiB median per cluster")
        print(f"  floor            {0:7.1f} s   (+ ≤ {polling:g} s polling) a snapshot is 0 s simulated; each job's "
              f"Job polling adds 0..{POLL:g} s: ⌈{n} / {args.backup_workers} workers⌉ × {POLL:g} s at most; the POSTs "
              f"themselves took {posted:.1f} s")
        problems = [f"fleet: {len(failed)} snapshot(s) not Ready"] if failed else []
        if len(rows) != n:
            problems.append(f"fleet: {len(rows)} snapshots recorded, {n} posted")
        return problems
    finally:
        sim.stop()


def ceil_div(a: int, b: int) -> int:
    return -(-a // max(1, b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=200, help="small clusters in the fleet part")
    parser.add_argument("--objects", type=int, default=5000, help="objects created on the 50-node cluster")
    parser.add_argument("--skip-fleet", action="store_true", help="only the 50-node cluster")
    parser.add_argument("--skip-big", action="store_true", help="only the fleet")
    parser.add_argument("--time-scale", type=float, default=1.0, help="multiplies every simulated duration")
    parser.add_argument("--backup-workers", type=int, default=2, help="worker processes on the backups queue "
                        "in the fleet part (bin/up's second worker + the rest started for it)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a phase may take")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleanup runs on SIGTERM as on Ctrl-C
    os.environ["CORRAL_SNAPSHOT_AFTER_IMPORT"] = "0"  # only the snapshots measured here

    begun = time.monotonic()
    problems: list[str] = []
    with Stack() as stack:
        print(f"Corral: gunicorn {stack.api.base}, 2 rqworker processes (clusters | default scans backups catalog: "
              f"1 on the backups queue), database {stack.db.what}")
        if not args.skip_big:
            problems += big_cluster(stack, args)
        if not args.skip_fleet and args.clusters > 0:
            problems += fleet(stack, args)
        print(f"\nAPI requests by the benchmark: {stack.api.requests}")
    print(f"total {time.monotonic() - begun:.0f} s (stack, simulators and clean-up included)")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
