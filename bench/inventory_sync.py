"""Benchmark: a full inventory sync of a simulated fleet, with one and with two RQ workers.

Starts the fleet simulator in its own process (default 2,000 clusters x 50 nodes), registers
every cluster in the portal's database, then for 1 and 2 `rqworker` processes times a full
`clusters.sync_fleet` run (split into sync jobs of CORRAL_CLUSTER_SYNC_BATCH clusters) and
prints wall time, clusters/s and database rows written per second.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/corral_bench .venv/bin/python bench/inventory_sync.py
    .venv/bin/python bench/inventory_sync.py --clusters 200 --nodes 20      # quick look
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to measure")
    parser.add_argument("--port", type=int, default=6999)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/corral_bench")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
    os.environ.setdefault("CORRAL_DATA_DIR", str(ROOT / "data" / "bench"))  # stable keys across runs
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    _ensure_database(os.environ["DATABASE_URL"])

    fleet_file = work / "fleet.yaml"
    fleet_file.write_text(
        "defaults:\n  timings: {heartbeat: 10, pod_start: 1}\n"
        f"clusters:\n  - name: 'bench-{{i:04d}}'\n    kind: rke\n    version: v1.17.4\n    count: {args.clusters}\n"
        f"    nodes: {{etcd: 1, controlplane: 1, worker: {max(1, args.nodes - 2)}}}\n"
    )
    kubeconfigs = work / "kubeconfigs"
    print(f"starting the simulator: {args.clusters} clusters x {args.nodes} nodes …", flush=True)
    started = time.monotonic()
    sim = subprocess.Popen(
        [sys.executable, "-m", "kubesim", "serve", "--fleet", str(fleet_file), "--port", str(args.port),
         "--kubeconfig-dir", str(kubeconfigs)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while len(list(kubeconfigs.glob("*.yaml"))) < args.clusters:
            if sim.poll() is not None:
                raise SystemExit("the simulator exited")
            time.sleep(0.5)
        time.sleep(1)
        print(f"simulator ready in {time.monotonic() - started:.1f} s", flush=True)
        return _run(args, kubeconfigs, work)
    finally:
        sim.terminate()
        sim.wait(30)


def _ensure_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # a fresh database each run
        conn.execute(f'CREATE DATABASE "{name}"')


def _run(args, kubeconfigs: Path, work: Path) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    import django_rq

    from clusters.models import Cluster, Node
    from portal import jobs
    from portal.models import Job

    Cluster.objects.bulk_create(
        [Cluster(name=p.stem, kind="rke", state="active", kubeconfig=p.read_text()) for p in sorted(kubeconfigs.glob("*.yaml"))],
        batch_size=500,
    )
    total_clusters = Cluster.objects.count()
    connection.close()
    results = []
    for count in [int(w) for w in args.workers.split(",")]:
        Node.objects.all().delete()
        Job.objects.all().delete()
        django_rq.get_connection("default").flushdb()
        env = dict(os.environ)
        workers = [
            subprocess.Popen([sys.executable, "manage.py", "rqworker", "clusters", "default"], cwd=ROOT, env=env,
                             stdout=open(work / f"worker-{count}-{i}.log", "w"), stderr=subprocess.STDOUT)
            for i in range(count)
        ]
        try:
            time.sleep(3)
            for phase in ("first sync (every node written)", "re-sync (only changed nodes written)"):
                Job.objects.all().delete()
                started = time.monotonic()
                jobs.enqueue("clusters.sync_fleet")
                while True:
                    done = Job.objects.filter(kind="clusters.sync").exclude(status__in=Job.ACTIVE).count()
                    total = Job.objects.filter(kind="clusters.sync").count()
                    if total and done == total and not Job.objects.filter(status__in=Job.ACTIVE).exists():
                        break
                    time.sleep(0.2)
                wall = time.monotonic() - started
                results.append(_report(count, phase, wall, total_clusters))
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(30)
    return 0 if all(failed == 0 for failed in results) else 1


def _report(count: int, phase: str, wall: float, total_clusters: int) -> int:
    from clusters.models import Cluster, Node
    from portal.models import Job

    done = list(Job.objects.filter(kind="clusters.sync", status="succeeded"))
    failed = Job.objects.filter(kind="clusters.sync").exclude(status="succeeded").count()
    written = sum(j.result["nodes_written"] for j in done)
    rows = written + total_clusters
    fetch = sum(j.result["fetch_seconds"] for j in done)
    write = sum(j.result["write_seconds"] for j in done)
    print(f"workers={count}, {phase}: {total_clusters} clusters in {wall:.1f} s ({total_clusters / wall:.0f} clusters/s); "
          f"{Node.objects.count()} nodes known, {written} node rows written, {rows / wall:.0f} rows/s; "
          f"{Cluster.objects.filter(state='active').count()} active, {failed} failed jobs; "
          f"summed job time reading {fetch:.1f} s, writing {write:.1f} s", flush=True)
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
