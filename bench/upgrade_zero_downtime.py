"""Benchmark: zero-downtime rolling upgrades against the simulator (issue 5, item 7).

1. A 9-node rke cluster (3 etcd + 3 control plane + 3 workers, v1.15.11 → v1.16.8) running a
   Deployment of 3 replicas with a PodDisruptionBudget minAvailable 2 is upgraded in rolling
   mode (drain on) and, on a fresh copy, in parallel mode (the old behaviour); ready replicas
   are sampled all the way through and the minimum of each is printed.
2. A 100-node rke cluster (3 etcd + 3 control plane + 94 workers, default strategy: control
   plane 1 at a time, workers 10%) is upgraded in rolling mode; the wall time is printed
   against the floor: number of batches × per-node upgrade time (the simulated time a node's
   Kubernetes takes to be replaced). Target: within 10% of the floor.

The portal side runs for real: a temporary SQLite database, the config change that starts
the upgrade, the ``clusters.upgrade`` job executed in this process as a worker would.

    .venv/bin/python bench/upgrade_zero_downtime.py
    .venv/bin/python bench/upgrade_zero_downtime.py --nodes 100 --upgrade-down 2
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django() -> None:
    work = Path(tempfile.mkdtemp(prefix="corral-upgrade-bench-"))
    os.environ["CORRAL_DATA_DIR"] = str(work)
    os.environ["DATABASE_URL"] = f"sqlite:///{work / 'bench.sqlite3'}"
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/12")
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    import logging

    import django
    from django.core.management import call_command

    django.setup()
    logging.getLogger("corral").setLevel(logging.ERROR)
    call_command("migrate", verbosity=0)


def run_upgrade(name: str, kubeconfig: str, strategy: dict, user, sampler=None) -> tuple[float, object]:
    """Import the cluster, change its version in the config, run the upgrade job here; (seconds, upgrade)."""
    from clusters import config, inventory
    from clusters.models import Upgrade
    from portal.jobs import execute

    cluster = inventory.import_cluster(name=name, kubeconfig=kubeconfig, user=user)
    doc = config.current_document(cluster)
    doc["kubernetes_version"] = "v1.16.8"
    doc["upgrade_strategy"].update(strategy)
    job = config.apply(cluster, doc, user=user)[1]
    if sampler is not None:
        sampler.start()
    started = time.monotonic()
    status = execute(str(job.pk))
    seconds = time.monotonic() - started
    if sampler is not None:
        sampler.stop()
    upgrade = Upgrade.objects.get(job=job)
    if status != "succeeded":
        job.refresh_from_db()
        raise SystemExit(f"{name}: the upgrade ended {status}: {job.error}")
    return seconds, upgrade


def zero_downtime(user) -> None:
    from clusters.upgrades.testing import ReadySampler, zero_downtime_fleet
    from kubesim import start_fleet

    print("9-node rke cluster, Deployment web 3 replicas, PDB minAvailable 2, v1.15.11 → v1.16.8")
    for mode, strategy in (("rolling", {"mode": "rolling", "drain": True}), ("parallel", {"mode": "parallel"})):
        name = f"zdt-{mode}"
        sim = start_fleet(zero_downtime_fleet(name))
        try:
            sampler = ReadySampler(sim.kubeconfig(name))
            seconds, upgrade = run_upgrade(name, sim.kubeconfig(name), {**strategy, "node_upgrade_timeout": 60}, user,
                                           sampler)
        finally:
            sim.stop()
        print(f"  {mode:8}  minimum ready replicas {sampler.minimum} (minAvailable 2)  "
              f"{len(sampler.samples)} samples  {seconds:.1f} s")


class SimProcess:
    """The simulator in a process of its own, as a real cluster is on other machines: the portal's
    measured time is not slowed by the simulator's own work in the same interpreter."""

    def __init__(self, fleet: dict):
        import json
        import subprocess

        self.dir = Path(tempfile.mkdtemp(prefix="corral-upgrade-sim-"))
        (self.dir / "fleet.yaml").write_text(json.dumps(fleet))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kubesim", "serve", "--fleet", str(self.dir / "fleet.yaml"), "--port", "0",
             "--kubeconfig-dir", str(self.dir / "kubeconfigs")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.names = [c["name"] for c in fleet["clusters"]]

    def kubeconfig(self, name: str) -> str:
        path = self.dir / "kubeconfigs" / f"{name}.yaml"
        deadline = time.monotonic() + 120
        while not path.exists() or not path.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the simulator did not start")
            time.sleep(0.2)
        time.sleep(0.2)
        return path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def hundred_nodes(user, nodes: int, upgrade_down: float) -> None:
    from clusters.upgrades.testing import rke_cluster

    workers = nodes - 6
    timings = {"upgrade_down": upgrade_down, "heartbeat": 0.5, "node_grace": 4 * upgrade_down, "node_status": 30,
               "pod_start": 0.2}
    sim = SimProcess({"clusters": [rke_cluster("hundred", {"etcd": 3, "controlplane": 3, "worker": workers},
                                               replicas=10, min_available=None, timings=timings)]})
    try:
        seconds, upgrade = run_upgrade("hundred", sim.kubeconfig("hundred"), {"node_upgrade_timeout": 120}, user)
    finally:
        sim.stop()
    rows = list(upgrade.nodes.all())
    sizes = [sum(1 for r in rows if r.batch == b) for b in sorted({r.batch for r in rows})]
    floor = len(sizes) * upgrade_down
    over = (seconds / floor - 1) * 100
    print(f"{nodes}-node rke cluster: 3 etcd, 3 control plane, {workers} workers (default strategy: control plane 1, "
          f"workers 10%); batch sizes {' '.join(map(str, sizes))}")
    print(f"  floor: {len(sizes)} batches × {upgrade_down:.1f} s per-node upgrade = {floor:.1f} s")
    print(f"  wall time {seconds:.1f} s: {over:+.1f}% over the floor (target within 10%)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--upgrade-down", type=float, default=2.0, help="simulated seconds per node upgrade")
    parser.add_argument("--skip-zero-downtime", action="store_true")
    args = parser.parse_args()
    setup_django()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123")
    if not args.skip_zero_downtime:
        zero_downtime(user)
    hundred_nodes(user, args.nodes, args.upgrade_down)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
