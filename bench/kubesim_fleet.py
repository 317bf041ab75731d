"""Benchmark: 2,000 simulated clusters x 50 nodes (100,000 nodes, with pods) in one process.

Prints the start time, resident memory, the heartbeat write rate, and p50/p95
latency of listing one cluster's nodes (GET /api/v1/nodes over keep-alive
HTTPS, measured from a separate client process) while the fleet heartbeats.
Targets (issue 4): RSS under 4 GiB, p95 under 50 ms.

    .venv/bin/python bench/kubesim_fleet.py                 # full size
    .venv/bin/python bench/kubesim_fleet.py --clusters 100  # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kubesim.fleet import load_spec  # noqa: E402
from kubesim.sim import Fleet  # noqa: E402

CLIENT = r"""
import http.client, json, ssl, sys, time
host, port, path, token, ca, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
ctx = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection(host, port, context=ctx)
hdr = {"Authorization": "Bearer " + token, "Accept": "application/json"}
out = []
items = 0
for i in range(n + 5):
    t = time.perf_counter()
    conn.request("GET", path, headers=hdr)
    resp = conn.getresponse()
    body = resp.read()
    dt = time.perf_counter() - t
    if resp.status != 200:
        raise SystemExit(f"HTTP {resp.status}: {body[:200]!r}")
    if i >= 5:
        out.append(dt)
        items = len(json.loads(body)["items"])
    time.sleep(0.02)
print(json.dumps({"latencies": out, "items": items}))
"""


def rss_mib() -> tuple[float, float]:
    cur = peak = 0.0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--replicas", type=int, default=10, help="replicas of the workload Deployment per cluster")
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--settle", type=float, default=15.0, help="seconds of heartbeats before measuring")
    ap.add_argument("--heartbeat", type=float, default=10.0, help="lease renew interval (kubelet default 10s)")
    args = ap.parse_args()

    workers = max(1, args.nodes - 5)
    spec = {"clusters": [{
        "name": "bench-{i:04d}", "count": args.clusters, "kind": "rke", "version": "v1.18.6",
        "nodes": {"etcd": 3, "controlplane": 2, "worker": workers},
        "workloads": [{"deployment": {"name": "web", "replicas": args.replicas}, "pdb": {"minAvailable": max(1, args.replicas - 2)}}],
    }]}
    specs, _ = load_spec(spec)
    t0 = time.monotonic()
    fleet = Fleet(timings={"heartbeat": args.heartbeat})
    for i, s in enumerate(specs, 1):
        fleet.add_cluster(s)
        if i % 250 == 0:
            print(f"  {i} clusters up after {time.monotonic() - t0:.1f}s, RSS {rss_mib()[0]:.0f} MiB", flush=True)
    start_s = time.monotonic() - t0
    nodes = sum(len(c.nodes) for c in fleet.clusters.values())
    pods = sum(c.store.count("pods") for c in fleet.clusters.values())
    print(f"started {len(fleet.clusters)} clusters, {nodes} nodes, {pods} pods in {start_s:.1f}s", flush=True)

    rev0 = sum(c.store.rv for c in fleet.clusters.values())
    t1 = time.monotonic()
    time.sleep(args.settle)
    target = specs[len(specs) // 2].name
    with tempfile.TemporaryDirectory() as tmp:
        ca = fleet.ca_file(tmp)
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, fleet.host, str(fleet.port), f"/k8s/clusters/{target}/api/v1/nodes",
             fleet.clusters[target].token, str(ca), str(args.samples)],
            capture_output=True, text=True, check=True)
    window = time.monotonic() - t1
    writes = (sum(c.store.rv for c in fleet.clusters.values()) - rev0) / window
    res = json.loads(proc.stdout)
    lat = [x * 1000 for x in res["latencies"]]
    rss, peak = rss_mib()
    p50, p95, p99 = pct(lat, 50), pct(lat, 95), pct(lat, 99)
    print(f"start time:          {start_s:.1f} s")
    print(f"resident memory:     {rss:.0f} MiB (peak {peak:.0f} MiB)")
    print(f"heartbeat writes:    {writes:.0f}/s (lease renewals and node status, all clusters)")
    print(f"list nodes ({res['items']} items, {len(lat)} samples): p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {max(lat):.1f} ms")
    ok = peak < 4096 and p95 < 50
    print(f"targets (RSS < 4096 MiB, p95 < 50 ms): {'met' if ok else 'NOT met'}")
    fleet.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
