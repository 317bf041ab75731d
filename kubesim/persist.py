"""A fleet that survives restarts: `serve --state-dir DIR`.

A restart is an outage, not a new fleet. The state directory holds one file, `fleet-state.json.gz`
(mode 0600: it has the CA key and the tokens), written atomically (temp file, fsync, rename) every
`interval` seconds on a thread of its own and once more on shutdown, so a crash loses at most the
last interval. It keeps:

* the CA (certificate and key) and the serving certificate, so the kubeconfigs written before stay
  valid (a new host is signed with the same CA); the port, reused when the command says `--port 0`;
* per cluster: its token, revoked tokens and fleet-file users' tokens (service-account tokens are
  Secrets, in the store), the whole store (every object at its resourceVersion,
  and the revision), the node runtimes (Kubernetes version, kubelet arguments, injected faults,
  disks), whether it is online, and its history.

On start, clusters of the fleet file found in the state are loaded from it (not rebuilt from the
fleet file); new ones are created fresh; clusters only in the state (added through the control API)
are loaded too. What is not kept: container logs, pending timers (pods being started or stopped
start again; a node upgrade in flight starts over when its Job's pod runs again), watches (clients
relist or resume: the watch cache starts at the saved revision).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster import Cluster, NodeRuntime, Timings
from .tls import ServingCert, make_serving_cert

if TYPE_CHECKING:
    from .fleet import ClusterSpec
    from .sim import Fleet

log = logging.getLogger("kubesim.persist")

STATE_FILE = "fleet-state.json.gz"
FORMAT = 1
NODE_FIELDS = ("name", "version", "ip", "up", "fail_upgrade", "failed", "failed_version", "fail_jobs",
               "fail_kube_bench", "fail_kube_bench_exit")


class StateDir:
    """The state directory of one fleet process."""

    def __init__(self, path: str | os.PathLike[str], interval: float = 5.0) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.interval = interval
        self.saved: dict[str, Any] = self._read() or {}
        self.pending: dict[str, dict[str, Any]] = dict(self.saved.get("clusters") or {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self.saves = 0

    @property
    def file(self) -> Path:
        return self.path / STATE_FILE

    def _read(self) -> dict[str, Any] | None:
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return None
        doc = json.loads(gzip.decompress(raw))
        if doc.get("format") != FORMAT:
            raise ValueError(f"{self.file}: unknown state format {doc.get('format')!r}")
        return doc

    # ------------------------------------------------------------------ start-up
    def serving_cert(self, hosts: list[str]) -> ServingCert:
        """The saved certificate if it covers `hosts`, else a new one signed by the saved CA (or a new CA)."""
        tls = self.saved.get("tls") or {}
        if tls.get("ca") and tls.get("caKey"):
            if tls.get("cert") and tls.get("key") and set(hosts) <= set(tls.get("hosts") or ()):
                return ServingCert(tls["ca"].encode(), tls["cert"].encode(), tls["key"].encode(),
                                   tls["caKey"].encode(), tuple(tls["hosts"]))
            return make_serving_cert(hosts, tls["ca"].encode(), tls["caKey"].encode())
        return make_serving_cert(hosts)

    def port(self, requested: int) -> int:
        """`--port 0` reuses the port of the previous run (if it is free; else the server picks one)."""
        return requested or int(self.saved.get("port") or 0)

    def has(self, name: str) -> bool:
        return name in self.pending

    def load_cluster(self, fleet: Fleet, name: str, spec: ClusterSpec | None) -> Cluster:
        st = self.pending.pop(name)
        return restore_cluster(fleet, name, st, spec)

    def load_rest(self, fleet: Fleet) -> list[Cluster]:
        """Clusters only the state knows (added through the control API before the restart)."""
        out = []
        for name in list(self.pending):
            if name in fleet.clusters:
                self.pending.pop(name)
                continue
            c = self.load_cluster(fleet, name, None)
            fleet.clusters[name] = c
            out.append(c)
        return out

    # ------------------------------------------------------------------ saving
    def start(self, fleet: Fleet) -> None:
        self.save(fleet)
        self._thread = threading.Thread(target=self._run, args=(fleet,), name="kubesim-persist", daemon=True)
        self._thread.start()

    def _run(self, fleet: Fleet) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save(fleet)
            except Exception:  # keep the fleet running; the next period tries again
                log.exception("saving the fleet state failed")

    def stop(self, fleet: Fleet) -> None:
        """Stop the periodic writer and write the state one last time (shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.save(fleet)

    def save(self, fleet: Fleet) -> None:
        cert = fleet.cert
        doc: dict[str, Any] = {
            "format": FORMAT, "saved": time.time(), "port": fleet.port, "host": fleet.host,
            "tls": ({"ca": cert.ca_pem.decode(), "caKey": cert.ca_key_pem.decode(), "cert": cert.cert_pem.decode(),
                     "key": cert.key_pem.decode(), "hosts": list(cert.hosts)} if cert else None),
            "clusters": {},
        }
        for name, c in list(fleet.clusters.items()):
            doc["clusters"][name] = cluster_state(c, fleet.offline_mode.get(name, "503"))
        data = gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), compresslevel=1)
        with self._write_lock:
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".state-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.file)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
            self.saves += 1


def cluster_state(c: Cluster, offline_mode: str = "503") -> dict[str, Any]:
    """One cluster's state, consistent (taken under its lock)."""
    with c.lock:
        rv, items = c.store.dump()
        nodes = []
        for rt in c.nodes.values():
            n = {k: getattr(rt, k) for k in NODE_FIELDS}
            n["roles"] = list(rt.roles)
            n["extra_labels"] = dict(rt.extra_labels)
            n["kubelet_args"] = dict(rt.kubelet_args)
            n["disk"] = {p: base64.b64encode(d).decode() for p, d in rt.disk.files().items()}
            nodes.append(n)
        return {
            "kind": c.kind, "initialVersion": c.initial_version, "uid": c.uid, "token": c.token,
            "oldTokens": sorted(c.old_tokens), "online": c.online, "offlineMode": offline_mode,
            "users": [{"token": tok, "name": u.name, "groups": list(u.groups), "uid": u.uid}
                      for tok, u in (getattr(c, "users", None) or {}).items()],  # fleet-file users (authz.py)
            "timeScale": c.time_scale, "timings": {f: getattr(c.timings, f) for f in Timings.__dataclass_fields__},
            "revision": rv, "objects": [[key, data.decode()] for key, data in items],
            "nodes": nodes, "history": list(c.history),
        }


def restore_cluster(fleet: Fleet, name: str, st: dict[str, Any], spec: ClusterSpec | None) -> Cluster:
    """Build a running cluster from its saved state (the counterpart of `fleet.build_cluster`)."""
    objects = [(str(k), json.loads(v)) for k, v in st["objects"]]
    base_path = f"/k8s/clusters/{name}"
    if spec is not None:
        timings = Timings.from_dict(spec.timings, fleet.timings).scaled(fleet.time_scale)
        scale = fleet.time_scale
    else:
        timings = Timings(**{k: float(v) for k, v in st["timings"].items() if k in Timings.__dataclass_fields__})
        scale = float(st.get("timeScale", fleet.time_scale))
    c = Cluster(name, st["kind"], st["initialVersion"], fleet.loop, timings, token=st["token"], base_path=base_path,
                server_url=fleet.base_url + base_path)
    c.old_tokens = set(st.get("oldTokens") or ())
    if st.get("users"):
        from .authz import UserInfo

        c.users = {u["token"]: UserInfo(u["name"], tuple(u.get("groups") or ()), u.get("uid") or "")
                   for u in st["users"]}
    c.uid = st.get("uid") or c.uid
    c.time_scale = scale
    c.record_events = False
    c.bootstrapping = True
    for n in st["nodes"]:
        rt = NodeRuntime(n["name"], tuple(n["roles"]), n["version"], n["ip"],
                         extra_labels=dict(n.get("extra_labels") or {}), kubelet_args=dict(n.get("kubelet_args") or {}))
        for k in NODE_FIELDS:
            if k in n:
                setattr(rt, k, n[k])
        for path, data in (n.get("disk") or {}).items():
            rt.disk.write(path, base64.b64decode(data))
        c.nodes[rt.name] = rt
    c.history.extend(st.get("history") or [])
    revision = int(st["revision"])
    with c.lock:
        c.refresh_version()

        def fields_for(key: str) -> Any:
            rtype = c.types().by_key.get(key)
            return rtype.field_getter if rtype else None

        c.store.load(revision, objects, fields_for)
        c._reload_crds()  # custom resources get their field getters once their CRDs are known
        c.store.load(revision, objects, fields_for)
        # a restart keeps the revision: no bump as after an etcd restore
        c.store.rv = revision
        c.store._floor = revision
        kub = c.controllers.kubelets
        for rt in c.nodes.values():
            rt.last_status = 0.0  # each kubelet reports its node status at its first heartbeat
        for i, rt in enumerate(c.nodes.values(), 1):
            kub._node_index.setdefault(rt.name, i)
            if rt.kubelet_running:
                kub.register(rt)
                rt.last_status = 0.0
    c.online = bool(st.get("online", True))
    if not c.online:
        fleet.offline_mode[name] = st.get("offlineMode") or "503"
    c.record_events = True
    c.bootstrapping = False
    c.controllers._decoded.clear()
    c.controllers.start()
    c.log("cluster", f"cluster {name} restored from the state directory at revision {revision}")
    c.kick()
    return c
