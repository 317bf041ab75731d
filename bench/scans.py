"""Benchmark: CIS scan time of one 50-node cluster, and the wall time of scanning 500 clusters with two workers.

Starts the fleet simulator in its own process, registers the clusters in the portal's database, runs one
scan of the big cluster in this process (kube-bench Jobs on the simulated nodes + the policy checks), then
queues a scan of every small cluster and lets `--workers` RQ worker processes run them.

    .venv/bin/python bench/scans.py                               # 1 x 50 nodes, 500 x 5 nodes, 2 workers
    .venv/bin/python bench/scans.py --clusters 50 --nodes 3       # quick look
Uses DATABASE_URL (default postgres …/corral_bench_scans) and REDIS_URL (default redis db 11, its own).
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
    parser.add_argument("--big-nodes", type=int, default=50)
    parser.add_argument("--clusters", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=6998)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-scans-"))
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/corral_bench_scans")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/11")
    os.environ.setdefault("CORRAL_DATA_DIR", str(ROOT / "data" / "bench"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    _ensure_database(os.environ["DATABASE_URL"])
    fleet = work / "fleet.yaml"
    fleet.write_text(
        "defaults:\n  timings: {heartbeat: 10, pod_start: 0.2, job_run: 0.3}\n"
        "clusters:\n"
        f"  - name: big\n    kind: rke\n    version: v1.27.3\n"
        f"    nodes: {{etcd: 3, controlplane: 2, worker: {max(1, args.big_nodes - 5)}}}\n"
        f"  - name: 'small-{{i:04d}}'\n    kind: imported\n    version: v1.27.3\n    count: {args.clusters}\n"
        f"    nodes: {{controlplane: 1, worker: {max(1, args.nodes - 1)}}}\n")
    kubeconfigs = work / "kubeconfigs"
    print(f"simulator: 1 x {args.big_nodes} nodes + {args.clusters} x {args.nodes} nodes …", flush=True)
    sim = subprocess.Popen([sys.executable, "-m", "kubesim", "serve", "--fleet", str(fleet), "--port", str(args.port),
                            "--kubeconfig-dir", str(kubeconfigs)], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    workers: list[subprocess.Popen] = []
    try:
        while len(list(kubeconfigs.glob("*.yaml"))) < args.clusters + 1:
            if sim.poll() is not None:
                raise SystemExit("the simulator exited")
            time.sleep(0.5)
        time.sleep(1)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from django.db.models import Count

        from clusters.models import Cluster
        from portal.jobs import execute
        from portal.models import Job
        from scans import services
        from scans.models import Scan, ScanProfile

        Scan.objects.all().delete()
        Job.objects.filter(kind="scans.scan").delete()
        Cluster.objects.filter(name__in=["big"] + [f"small-{i:04d}" for i in range(args.clusters)]).delete()
        big = Cluster.objects.create(name="big", kind="rke", kubernetes_version="v1.27.3", state="active",
                                     kubeconfig=(kubeconfigs / "big.yaml").read_text())
        small = Cluster.objects.bulk_create([
            Cluster(name=f"small-{i:04d}", kind="imported", kubernetes_version="v1.27.3", state="active",
                    kubeconfig=(kubeconfigs / f"small-{i:04d}.yaml").read_text()) for i in range(args.clusters)])
        profile = ScanProfile.objects.get(name="cis-1.8-hardened")

        scan = services.request_scan(big, profile)
        started = time.monotonic()
        execute(str(scan.job_id))
        big_seconds = time.monotonic() - started
        scan.refresh_from_db()
        print(f"one {args.big_nodes}-node cluster: {big_seconds:.2f} s ({scan.total} checks: {scan.passed} pass, "
              f"{scan.failed} fail, {scan.warned} warn, {scan.not_applicable} N/A, {scan.errored} error)", flush=True)

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for _ in range(args.workers):
            workers.append(subprocess.Popen([sys.executable, "manage.py", "rqworker", "scans", "--worker-class",
                                             "portal.jobs.worker.Worker"], cwd=ROOT, env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2)
        started = time.monotonic()
        ids = [services.request_scan(c, profile).pk for c in small]
        while True:
            left = Scan.objects.filter(pk__in=ids, state__in=("queued", "running")).count()
            if not left:
                break
            time.sleep(0.5)
        wall = time.monotonic() - started
        states = dict(Scan.objects.filter(pk__in=ids).values_list("state").annotate(n=Count("pk")).order_by())
        print(f"{args.clusters} clusters x {args.nodes} nodes, {args.workers} workers: {wall:.1f} s wall "
              f"({args.clusters / wall:.1f} scans/s), states {states}", flush=True)
        return 0
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
        sim.terminate()
        sim.wait(15)


def _ensure_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    name = url.rsplit("/", 1)[-1]
    import psycopg

    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    raise SystemExit(main())
