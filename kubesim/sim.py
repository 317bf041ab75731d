"""The running fleet: clusters, the loop thread, the HTTP server and the control API.

    sim = start_fleet("fleets/demo.yaml", port=0, time_scale=0.1)
    sim.kubeconfig("demo-rke")      # YAML text for kubectl or the Python client
    sim.set_online("demo-rke", False)
    sim.stop()
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from . import errors, etcd
from .apiserver import Response, json_response
from .cluster import Cluster, Timings
from .controllers import kubebench
from .fleet import ClusterSpec, build_cluster, load_spec
from .loop import Loop


class Fleet:
    """Handle on a running simulated fleet (thread-safe)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, time_scale: float = 1.0,
                 timings: dict[str, float] | None = None, tls: bool = True,
                 state_dir: str | os.PathLike[str] | None = None, state_interval: float = 5.0) -> None:
        from .server import serve
        from .tls import make_serving_cert

        self.loop = Loop()
        self.loop.start()
        self.time_scale = time_scale
        self.timings = Timings.from_dict(timings)
        self.clusters: dict[str, Cluster] = {}
        self.offline_mode: dict[str, str] = {}
        self.control = ControlApi(self)
        self.state = None  # persist.StateDir with --state-dir: the fleet survives restarts
        if state_dir is not None:
            from .persist import StateDir

            self.state = StateDir(state_dir, state_interval)
        hosts = sorted({host, "127.0.0.1", "localhost"})
        self.cert = (self.state.serving_cert(hosts) if self.state else make_serving_cert(hosts)) if tls else None
        ssl_ctx = self.cert.server_context() if self.cert else None
        try:
            self._server, self._thread = serve(self, host, self.state.port(port) if self.state else port, ssl_ctx)
        except OSError:
            if not self.state or port:
                raise
            self._server, self._thread = serve(self, host, 0, ssl_ctx)  # the previous run's port is taken
        h, p = self._server.server_address[:2]
        self.host, self.port = str(h), int(p)
        self.base_url = f"{'https' if tls else 'http'}://{self.host}:{self.port}"
        self.started_at = time.time()

    # ------------------------------------------------------------------ clusters
    def add_cluster(self, spec: ClusterSpec) -> Cluster:
        if spec.name in self.clusters:
            raise ValueError(f"cluster {spec.name} already exists")
        if self.state is not None and self.state.has(spec.name):
            c = self.state.load_cluster(self, spec.name, spec)
            self.clusters[spec.name] = c
            return c
        c = build_cluster(spec, self.loop, self.timings, self.time_scale, self.base_url)
        self.clusters[spec.name] = c
        return c

    def add_from(self, source: str | os.PathLike[str] | dict[str, Any]) -> list[Cluster]:
        specs, defaults = load_spec(source)
        return [self.add_cluster(s) for s in specs]

    def remove_cluster(self, name: str) -> None:
        c = self.clusters.pop(name)
        c.online = False
        c.stop()

    def cluster(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            raise KeyError(f"no cluster named {name!r}") from None

    def server_url(self, name: str) -> str:
        return f"{self.base_url}/k8s/clusters/{name}"

    def ca_file(self, directory: str | os.PathLike[str]) -> Path | None:
        """Write the fleet CA (PEM) for clients that want a file."""
        if self.cert is None:
            return None
        p = Path(directory) / "kubesim-ca.crt"
        p.write_bytes(self.cert.ca_pem)
        return p

    def etcd_url(self, name: str) -> str:
        return f"{self.base_url}/etcd/{name}"

    def kubeconfig(self, name: str, user: str | None = None) -> str:
        """A kubeconfig (YAML text) for one cluster: server URL and bearer token (the admin's, or the token of
        fleet identity `user`: a user's name, or `NS/NAME` / `system:serviceaccount:NS:NAME` of a service account)."""
        c = self.cluster(name)
        token, who = c.token, f"{name}-admin"
        if user is not None:
            from .authz import token_of

            with c.lock:
                token = token_of(c, user)
            if token is None:
                raise KeyError(f"cluster {name} has no identity {user!r} with a token")
            who = f"{name}-{user.rsplit(':', 1)[-1].replace('/', '-')}"
        doc = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": self.server_url(name),
                                                    **({"certificate-authority-data": self.cert.ca_data} if self.cert else {})}}],
            "users": [{"name": who, "user": {"token": token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": who}}],
            "current-context": name,
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def write_kubeconfigs(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        out = {}
        for name in self.clusters:
            p = d / f"{name}.yaml"
            p.write_text(self.kubeconfig(name))
            p.chmod(0o600)
            out[name] = p
        return out

    # ------------------------------------------------------------------ control
    def set_online(self, name: str, online: bool, mode: str = "503") -> None:
        """Take a cluster off the network (`mode` "503" answers 503, "refuse" drops connections).

        Only the way in is cut: the cluster's own controllers and kubelets keep running."""
        if mode not in ("503", "refuse"):
            raise ValueError("mode must be '503' or 'refuse'")
        c = self.cluster(name)
        with c.lock:
            c.online = online
            self.offline_mode[name] = mode
            c.store.changed.notify_all()
        c.log("network", f"cluster {'online' if online else 'offline (' + mode + ')'}")
        if online:
            c.kick()

    def rotate_token(self, name: str, token: str | None = None) -> str:
        """Replace the cluster's token; the old one gets 401 from now on."""
        return self.cluster(name).rotate_token(token)

    def fail_node_upgrade(self, name: str, node: str, fail: bool = True) -> None:
        """Make a node's next upgrades fail (its new kubelet never starts) until cleared;
        clearing it starts a failed node's kubelet on the version it was upgraded to."""
        c = self.cluster(name)
        with c.lock:
            rt = c.nodes[node]
            rt.fail_upgrade = fail
            c.log("control", f"node {node}: fail_upgrade={fail}", node=node)
            if not fail and rt.failed and rt.up:
                # the fault is gone: the service manager's next restart brings the new kubelet up
                rt.failed = False
                if rt.failed_version:
                    rt.version = rt.failed_version
                rt.last_status = 0.0
                c.controllers.kubelets.renew(rt)
                c.controllers.kubelets.report_status(rt)
                c.refresh_version()
        c.kick()

    def fail_node_jobs(self, name: str, node: str, message: str | None = "upgrade script failed") -> None:
        """Make every upgrade-job container on a node exit 1 with `message` (None clears it)."""
        c = self.cluster(name)
        c.nodes[node].fail_jobs = message or ""
        c.log("control", f"node {node}: fail_jobs={message!r}", node=node)

    def fail_node_kube_bench(self, name: str, node: str, message: str | None = kubebench.NO_PROGRAMS,
                             exit_code: int = 1) -> None:
        """Make kube-bench on a node print `message` instead of its report and exit `exit_code` (None clears
        it; the default is kube-bench's own error when it finds none of the programs it checks)."""
        c = self.cluster(name)
        rt = c.nodes[node]
        rt.fail_kube_bench = message or ""
        rt.fail_kube_bench_exit = exit_code
        c.log("control", f"node {node}: fail_kube_bench={message!r} exit {exit_code}", node=node)

    def set_node_up(self, name: str, node: str, up: bool) -> None:
        """Power a node off (its kubelet stops; the node controller will find it lost) or on."""
        c = self.cluster(name)
        with c.lock:
            rt = c.nodes[node]
            rt.up = up
            if up:
                rt.failed = False
                rt.last_status = 0.0
                c.controllers.kubelets.renew(rt)
                c.controllers.kubelets.report_status(rt)
            c.log("control", f"node {node}: {'up' if up else 'down'}", node=node)
        c.kick()

    def history(self, name: str) -> list[dict[str, Any]]:
        return list(self.cluster(name).history)

    def snapshot(self, name: str) -> bytes:
        return etcd.snapshot(self.cluster(name))

    def restore(self, name: str, blob: bytes) -> dict[str, Any]:
        return etcd.restore(self.cluster(name), blob)

    def wait_for(self, predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
        """Poll `predicate()` until it returns something truthy (test helper)."""
        deadline = time.monotonic() + timeout
        while True:
            got = predicate()
            if got:
                return got
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(interval)

    def info(self, name: str) -> dict[str, Any]:
        c = self.cluster(name)
        return {
            "name": name, "kind": c.kind, "version": c.version, "online": c.online,
            "server": self.server_url(name), "etcd": self.etcd_url(name),
            "revision": c.store.rv,
            "nodes": [{"name": n.name, "roles": list(n.roles), "version": n.version, "up": n.up,
                       "upgrading": n.upgrading, "failUpgrade": n.fail_upgrade, "failJobs": n.fail_jobs,
                       "failKubeBench": n.fail_kube_bench, "failed": n.failed,
                       "kubeletArgs": dict(n.kubelet_args), "ip": n.ip, "disk": sorted(n.disk.files())}
                      for n in c.nodes.values()],
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self.state is not None:
            try:
                self.state.stop(self)  # the last write: a restart finds the fleet as it was now
            except Exception:
                import logging

                logging.getLogger("kubesim.persist").exception("saving the fleet state on shutdown failed")
        for c in self.clusters.values():
            c.api.stopping.set()
            c.online = False
            with c.lock:
                c.store.changed.notify_all()
            c.stop()
        self.loop.stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ControlApi:
    """`/_sim/...` endpoints: the same operations as the Fleet methods, over HTTP."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> Response:
        f = self.fleet
        parts = [p for p in path.split("/") if p][1:]  # drop "_sim"
        data: dict[str, Any] = {}
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                raise errors.bad_request("control API bodies are JSON") from None
        try:
            if parts == ["clusters"]:
                if method == "GET":
                    return json_response(200, {"clusters": [f.info(n) for n in f.clusters]})
                if method == "POST":
                    created = f.add_from({"clusters": [data]} if "clusters" not in data else data)
                    return json_response(201, {"clusters": [f.info(c.name) for c in created]})
            if len(parts) >= 2 and parts[0] == "clusters":
                name = parts[1]
                f.cluster(name)
                rest = parts[2:]
                if not rest and method == "GET":
                    return json_response(200, f.info(name))
                if not rest and method == "DELETE":
                    f.remove_cluster(name)
                    return json_response(200, {"deleted": name})
                if rest == ["kubeconfig"] and method == "GET":
                    return Response(200, f.kubeconfig(name, query.get("user")).encode(), "application/yaml")
                if rest == ["offline"] and method == "POST":
                    f.set_online(name, False, data.get("mode", "503"))
                    return json_response(200, f.info(name))
                if rest == ["online"] and method == "POST":
                    f.set_online(name, True)
                    return json_response(200, f.info(name))
                if rest == ["token"] and method == "POST":
                    return json_response(200, {"token": f.rotate_token(name, data.get("token"))})
                if rest == ["history"] and method == "GET":
                    return json_response(200, {"history": f.history(name)})
                if rest == ["snapshot"] and method == "POST":
                    return Response(200, f.snapshot(name), "application/octet-stream")
                if rest == ["restore"] and method == "POST":
                    try:
                        return json_response(200, f.restore(name, body))
                    except etcd.SnapshotError as e:
                        return json_response(400, {"error": str(e)})
                if len(rest) == 3 and rest[0] == "nodes" and method == "POST":
                    node = rest[1]
                    if node not in f.cluster(name).nodes:
                        raise errors.not_found("nodes", "", node)
                    if rest[2] == "fail-upgrade":
                        f.fail_node_upgrade(name, node, bool(data.get("fail", True)))
                    elif rest[2] == "fail-jobs":
                        f.fail_node_jobs(name, node, data.get("message", "upgrade script failed"))
                    elif rest[2] == "fail-kube-bench":
                        f.fail_node_kube_bench(name, node, data.get("message", kubebench.NO_PROGRAMS),
                                               int(data.get("exit_code", 1)))
                    elif rest[2] == "down":
                        f.set_node_up(name, node, False)
                    elif rest[2] == "up":
                        f.set_node_up(name, node, True)
                    else:
                        raise errors.ApiError(404, "NotFound", "unknown node action")
                    return json_response(200, f.info(name))
        except KeyError as e:
            raise errors.ApiError(404, "NotFound", str(e)) from None
        except ValueError as e:
            raise errors.bad_request(str(e)) from None
        raise errors.ApiError(404, "NotFound", f"no control endpoint {method} {path}")


def start_fleet(fleet: str | os.PathLike[str] | dict[str, Any] | None = None, host: str = "127.0.0.1",
                port: int = 0, time_scale: float | None = None, timings: dict[str, float] | None = None,
                tls: bool = True, state_dir: str | os.PathLike[str] | None = None,
                state_interval: float = 5.0) -> Fleet:
    """Start a fleet in this process on background threads and return its handle.

    `fleet` is a fleet file path or an equivalent dict; `time_scale` multiplies
    every simulated duration (0.05 makes a 10 s upgrade take half a second). With `state_dir` the
    fleet is saved there every `state_interval` seconds and on `stop()`, and loaded from it on start
    (persist.py).
    """
    defaults: dict[str, Any] = {}
    if fleet is not None:
        _, defaults = load_spec(fleet)
    scale = time_scale if time_scale is not None else float(defaults.get("time_scale", 1.0))
    sim = Fleet(host, port, scale, {**(defaults.get("timings") or {}), **(timings or {})}, tls,
                state_dir, state_interval)
    try:
        if fleet is not None:
            sim.add_from(fleet)
        if sim.state is not None:
            sim.state.load_rest(sim)
            sim.state.start(sim)
    except BaseException:
        sim.stop()
        raise
    return sim
