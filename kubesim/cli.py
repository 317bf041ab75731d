"""`python -m kubesim serve|snapshot|restore`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

from .sim import start_fleet


def _serve(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    sim = start_fleet(args.fleet, host=args.host, port=args.port, time_scale=args.time_scale)
    took = time.monotonic() - t0
    print(f"kubesim: {len(sim.clusters)} cluster(s) serving at {sim.base_url} (started in {took:.1f}s)", flush=True)
    if args.kubeconfig_dir:
        paths = sim.write_kubeconfigs(args.kubeconfig_dir)
        for name, p in paths.items():
            print(f"  {name}: {sim.server_url(name)}  kubeconfig {p}", flush=True)
    else:
        for name in sim.clusters:
            print(f"  {name}: {sim.server_url(name)}", flush=True)
    print(f"control API: {sim.base_url}/_sim/clusters", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    sim.stop()
    return 0


def _auth_request(url: str, token: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data if data is not None else b"", method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req) as resp:
        return resp.read()


def _snapshot(args: argparse.Namespace) -> int:
    blob = _auth_request(f"{args.etcd_url.rstrip('/')}/v3/maintenance/snapshot", args.token)
    Path(args.file).write_bytes(blob)
    print(f"wrote {len(blob)} bytes to {args.file}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    out = _auth_request(f"{args.etcd_url.rstrip('/')}/v3/maintenance/restore", args.token, Path(args.file).read_bytes())
    print(out.decode())
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kubesim", description="Kubernetes fleet simulator")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve a fleet until interrupted")
    s.add_argument("--fleet", required=True, help="fleet YAML file")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=6443)
    s.add_argument("--time-scale", type=float, default=None, help="multiply every simulated duration")
    s.add_argument("--kubeconfig-dir", help="write one kubeconfig per cluster here")
    s.add_argument("-v", "--verbose", action="store_true")
    for name, helptext in (("snapshot", "save a cluster's etcd snapshot"), ("restore", "restore a cluster from a snapshot")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--etcd-url", required=True, help="e.g. http://127.0.0.1:6443/etcd/demo-rke")
        e.add_argument("--token", required=True, help="the cluster's bearer token")
        e.add_argument("file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING)
    return {"serve": _serve, "snapshot": _snapshot, "restore": _restore}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
