"""`python -m kubesim serve|snapshot|restore`."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .sim import start_fleet


def _serve(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    sim = start_fleet(args.fleet, host=args.host, port=args.port, time_scale=args.time_scale,
                      state_dir=args.state_dir, state_interval=args.state_interval)
    took = time.monotonic() - t0
    print(f"kubesim: {len(sim.clusters)} cluster(s) serving at {sim.base_url} (started in {took:.1f}s)", flush=True)
    if args.kubeconfig_dir:
        paths = sim.write_kubeconfigs(args.kubeconfig_dir)
        sim.ca_file(args.kubeconfig_dir)
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


def _auth_request(args: argparse.Namespace, url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data if data is not None else b"", method="POST",
                                 headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/octet-stream"})
    ctx = ssl.create_default_context(cafile=args.ca_file) if args.ca_file else None
    if args.insecure:
        ctx = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(req, context=ctx) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{e.code}: {e.read().decode(errors='replace')}") from None


def _snapshot(args: argparse.Namespace) -> int:
    blob = _auth_request(args, f"{args.etcd_url.rstrip('/')}/v3/maintenance/snapshot")
    Path(args.file).write_bytes(blob)
    print(f"wrote {len(blob)} bytes to {args.file}")
    return 0


def _restore(args: argparse.Namespace) -> int:
    out = _auth_request(args, f"{args.etcd_url.rstrip('/')}/v3/maintenance/restore", Path(args.file).read_bytes())
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
    s.add_argument("--kubeconfig-dir", help="write one kubeconfig per cluster (and kubesim-ca.crt) here")
    s.add_argument("--state-dir", help="keep the fleet here (CA, tokens, objects, nodes) and load it on start")
    s.add_argument("--state-interval", type=float, default=5.0, help="seconds between state writes (default 5)")
    s.add_argument("-v", "--verbose", action="store_true")
    for name, helptext in (("snapshot", "save a cluster's etcd snapshot"), ("restore", "restore a cluster from a snapshot")):
        e = sub.add_parser(name, help=helptext)
        e.add_argument("--etcd-url", required=True, help="e.g. http://127.0.0.1:6443/etcd/demo-rke")
        e.add_argument("--token", required=True, help="the cluster's bearer token")
        e.add_argument("--ca-file", help="CA bundle (the kubeconfig's certificate-authority-data, decoded)")
        e.add_argument("--insecure", action="store_true", help="skip TLS verification")
        e.add_argument("file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.WARNING)
    return {"serve": _serve, "snapshot": _snapshot, "restore": _restore}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
