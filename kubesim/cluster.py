"""One simulated cluster: its store, API server, node runtimes and controllers."""

from __future__ import annotations

import posixpath
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import errors
from .apiserver import ApiServer
from .discovery import TypeIndex
from .loop import Loop, Timer
from .resources import ResourceType, crd_resource_type, parse_version
from .store import Store
from .util import dig, new_uid, now_iso

# Writes that wake no controller. Secrets and ConfigMaps do: SUC re-hashes a Plan when a Secret it names changes.
QUIET_KEYS = {"leases.coordination.k8s.io", "events", "endpoints"}


@dataclass(frozen=True)
class Timings:
    """Simulated durations in seconds (before `time_scale`); real defaults in comments."""

    pod_start: float = 2.0  # image pull + container start
    pod_stop: float = 1.0  # kubelet kill time (capped by the grace period)
    job_run: float = 3.0  # how long a Job's pod runs before it succeeds
    heartbeat: float = 10.0  # kubelet nodeLeaseRenewInterval (10s)
    node_status: float = 300.0  # kubelet nodeStatusReportFrequency (5m with node leases)
    node_grace: float = 40.0  # node-monitor-grace-period (40s)
    eviction_timeout: float = 300.0  # default tolerationSeconds for not-ready/unreachable (300s)
    upgrade_down: float = 10.0  # a node is NotReady this long while its Kubernetes is replaced
    drain_timeout: float = 0.0  # SUC drain timeout when a Plan sets none (0 = wait forever)
    kubelet_restart: float = 2.0  # a node is NotReady this long while its kubelet restarts with new flags

    def scaled(self, scale: float) -> Timings:
        return replace(self, **{f.name: getattr(self, f.name) * scale for f in fields(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, base: Timings | None = None) -> Timings:
        base = base or cls()
        names = {f.name for f in fields(cls)}
        extra = set(data or {}) - names
        if extra:
            raise ValueError(f"unknown timing(s): {', '.join(sorted(extra))}")
        return replace(base, **{k: float(v) for k, v in (data or {}).items()})


_FILES_LOCK = threading.Lock()  # one for every node's disk and logs: cheap with 100,000 nodes, rarely contended


class NodeDisk:
    """A machine's disk: files by absolute path (bytes).

    Outside etcd, so a restore leaves it alone, and a kubelet restart or upgrade too; it belongs
    to its `NodeRuntime`, so a node that is removed takes its files with it. Thread-safe (tests
    read and write it while the loop thread runs containers).
    """

    __slots__ = ("_files",)

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}

    @staticmethod
    def norm(path: str) -> str:
        text = str(path)
        if not text.startswith("/"):
            raise ValueError(f"not an absolute path: {text!r}")
        return "/" + posixpath.normpath(text).lstrip("/")

    def read(self, path: str) -> bytes:
        with _FILES_LOCK:
            try:
                return self._files[self.norm(path)]
            except KeyError:
                raise FileNotFoundError(path) from None

    def get(self, path: str, default: bytes | None = None) -> bytes | None:
        with _FILES_LOCK:
            return self._files.get(self.norm(path), default)

    def write(self, path: str, data: bytes) -> None:
        if not isinstance(data, bytes | bytearray):
            raise TypeError("file contents are bytes")
        with _FILES_LOCK:
            self._files[self.norm(path)] = bytes(data)

    def exists(self, path: str) -> bool:
        return self.get(path) is not None

    def is_dir(self, path: str) -> bool:
        prefix = self.norm(path).rstrip("/") + "/"
        with _FILES_LOCK:
            return any(f.startswith(prefix) for f in self._files)

    def remove(self, path: str) -> bool:
        with _FILES_LOCK:
            return self._files.pop(self.norm(path), None) is not None

    def listdir(self, path: str) -> list[str]:
        """Names directly under a directory (files and subdirectories), sorted."""
        prefix = self.norm(path).rstrip("/") + "/"
        with _FILES_LOCK:
            return sorted({f[len(prefix):].split("/", 1)[0] for f in self._files if f.startswith(prefix)})

    def files(self, under: str = "/") -> dict[str, bytes]:
        """A copy of the files under a directory, by absolute path."""
        prefix = self.norm(under).rstrip("/") + "/"
        with _FILES_LOCK:
            return {f: d for f, d in self._files.items() if f.startswith(prefix)}

    def __len__(self) -> int:
        return len(self._files)


class ContainerLogs:
    """What the containers on a machine printed, per pod uid and container: the kubelet serves it as
    the pod log. Only the newest `MAX_PODS` pods are kept, as log rotation and pod GC would."""

    MAX_PODS = 64
    __slots__ = ("_pods",)

    def __init__(self) -> None:
        self._pods: OrderedDict[str, dict[str, list[tuple[str, str]]]] | None = None  # made on first output

    def append(self, pod_uid: str, container: str, text: str) -> None:
        ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"
        with _FILES_LOCK:
            if self._pods is None:
                self._pods = OrderedDict()
            pod = self._pods.setdefault(pod_uid, {})
            self._pods.move_to_end(pod_uid)
            pod.setdefault(container, []).extend((stamp, line) for line in str(text).splitlines() or [""])
            while len(self._pods) > self.MAX_PODS:
                self._pods.popitem(last=False)

    def lines(self, pod_uid: str, container: str) -> list[tuple[str, str]] | None:
        """(timestamp, line) pairs, or None when that container printed nothing here."""
        with _FILES_LOCK:
            got = (self._pods or {}).get(pod_uid, {}).get(container)
            return list(got) if got is not None else None


@dataclass
class NodeRuntime:
    """What runs on a machine, outside the API: the kubelet's real version and health, its disk."""

    name: str
    roles: tuple[str, ...]
    version: str
    ip: str
    up: bool = True  # kubelet running and reachable
    upgrading: bool = False
    fail_upgrade: bool = False  # control API: the next upgrade never comes back
    failed: bool = False
    failed_version: str = ""  # what the machine was upgraded to when its new kubelet failed to start
    fail_jobs: str = ""  # fleet file / control API: every upgrade-job container here exits 1 with this message
    fail_kube_bench: str = ""  # fleet file / control API: kube-bench here prints this instead of its report...
    fail_kube_bench_exit: int = 1  # ... and exits with this code (controllers/kubebench.py)
    last_status: float = 0.0
    extra_labels: dict[str, str] = field(default_factory=dict)
    kubelet_args: dict[str, str] = field(default_factory=dict)  # flags the kubelet runs with (max-pods)
    disk: NodeDisk = field(default_factory=NodeDisk, repr=False)  # files on the machine (etcd snapshots)
    logs: ContainerLogs = field(default_factory=ContainerLogs, repr=False)  # what its containers printed

    @property
    def max_pods(self) -> str:
        return str(self.kubelet_args.get("max-pods", "110"))

    @property
    def kubelet_running(self) -> bool:
        """Posts status, renews its lease and runs pods (not while upgrading or after a failed upgrade)."""
        return self.up and not self.upgrading and not self.failed


class Cluster:
    def __init__(self, name: str, kind: str, version: str, loop: Loop, timings: Timings, *,
                 token: str | None = None, base_path: str = "", watch_cache_size: int = 100,
                 server_url: str = "") -> None:
        parse_version(version)
        self.name = name
        self.kind = kind
        self.initial_version = version
        self.loop = loop
        self.timings = timings
        self.token = token or secrets.token_urlsafe(24)
        self.old_tokens: set[str] = set()
        self.users: dict[str, Any] = {}  # static bearer token -> authz.UserInfo (fleet-file users)
        self.base_path = base_path
        self.server_url = server_url
        self.online = True
        self.store = Store(watch_cache_size)
        self.api = ApiServer(self)
        self.nodes: dict[str, NodeRuntime] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=2000)
        self.record_events = True
        self.quiet = False
        self._crd_types: list[ResourceType] = []
        self._crd_gen = 0
        self.time_scale = 1.0
        self.bootstrapping = False
        self._types: TypeIndex | None = None
        self._types_key: tuple[Any, ...] = ()
        self._kick: Timer | None = None
        self._timers: list[Timer] = []
        self._event_names: dict[tuple[str, str, str, str], str] = {}
        self.uid = new_uid()
        self.lock = self.store.lock
        self._version_cache: str = version
        self._minor = parse_version(version)[1]
        self._reconciling = False
        from .controllers import ControllerManager

        self.controllers = ControllerManager(self)

    # ------------------------------------------------------------------ version
    @property
    def version(self) -> str:
        """The API server's version: the oldest control-plane node's, as when the
        last apiserver replica is upgraded the answer changes."""
        return self._version_cache

    def refresh_version(self) -> None:
        cp = [n.version for n in self.nodes.values() if {"controlplane", "master", "server"} & set(n.roles)]
        if cp:
            self._version_cache = min(cp, key=lambda v: parse_version(v)[:3])
        self._minor = parse_version(self._version_cache)[1]

    @property
    def minor(self) -> int:
        return self._minor

    def version_info(self) -> dict[str, Any]:
        major, minor, _, _ = parse_version(self.version)
        go = {15: "go1.12.17", 16: "go1.13.9", 17: "go1.13.8", 18: "go1.13.15", 19: "go1.15.15", 20: "go1.15.15"}
        return {
            "major": str(major),
            "minor": str(minor),
            "gitVersion": self.version,
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2020-03-12T21:00:06Z",
            "goVersion": go.get(minor, "go1.22.5"),
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def server_address(self) -> str:
        return self.server_url.split("://", 1)[-1].split("/", 1)[0] if self.server_url else "127.0.0.1:6443"

    def types(self) -> TypeIndex:
        key = (self.minor, self._crd_gen)
        if self._types is None or key != self._types_key:
            self._types = TypeIndex(self.minor, self._crd_types)
            self._types_key = key
        return self._types

    def rt(self, key: str) -> ResourceType:
        return self.types().by_key[key]

    # ------------------------------------------------------------------ auth
    def authorize(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        return secrets.compare_digest(header[7:].strip(), self.token)

    def rotate_token(self, new: str | None = None) -> str:
        self.old_tokens.add(self.token)
        self.token = new or secrets.token_urlsafe(24)
        self.log("token", "token rotated; the old token is revoked")
        return self.token

    # ------------------------------------------------------------------ hooks from the API server
    def on_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.kind == "Service":
            spec = obj["spec"]
            if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
                n = self.store.count("services") + 10
                spec["clusterIP"] = f"10.43.{(n // 250) % 250}.{n % 250 + 1}"
        elif rt.kind == "CustomResourceDefinition":
            self._crd_status(obj)
        elif rt.kind == "Secret" and obj.get("type") == "kubernetes.io/service-account-token":
            from .authz import fill_sa_token

            fill_sa_token(self, obj)  # the token controller's work

    def on_update(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
        if rt.kind == "CustomResourceDefinition":
            self._crd_status(new)

    def _crd_status(self, crd: dict[str, Any]) -> None:
        names = dict(dig(crd, "spec", "names", default={}) or {})
        st = crd.setdefault("status", {})
        st["acceptedNames"] = names
        st["storedVersions"] = [v["name"] for v in dig(crd, "spec", "versions", default=[]) if v.get("storage")] or \
            ([crd["spec"]["version"]] if dig(crd, "spec", "version") else [])
        now = now_iso()
        st["conditions"] = [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"},
        ]

    def after_write(self, rt: ResourceType, obj: dict[str, Any], event: str) -> None:
        if rt.kind == "CustomResourceDefinition":
            self._reload_crds()
            if event == "DELETED":
                crt = crd_resource_type(obj)
                if crt:
                    for (ns, name), _ in self.store.entries(crt.key):
                        self.store.remove(crt.key, ns, name)
        if self.quiet or rt.key in QUIET_KEYS:
            return
        self.kick()

    def _reload_crds(self) -> None:
        types = []
        for crd in self.store.objects("customresourcedefinitions.apiextensions.k8s.io"):
            rt = crd_resource_type(crd)
            if rt and not dig(crd, "metadata", "deletionTimestamp"):
                types.append(rt)
        self._crd_types = types
        self._crd_gen += 1

    # ------------------------------------------------------------------ controllers
    def kick(self, delay: float = 0.005) -> None:
        """Ask for a reconcile soon; many writes coalesce into one pass."""
        if self._kick is None and not self._reconciling:
            self._kick = self.loop.call_later(delay, self._reconcile)
        elif self._reconciling:
            self._again = True

    _again = False

    def wake_in(self, delay: float) -> None:
        """Reconcile again after `delay` (for controllers that poll, like a drain retry)."""
        self._track(self.loop.call_later(delay, self.kick))

    def _track(self, t: Timer) -> None:
        self._timers.append(t)
        if len(self._timers) > 256:
            now = time.monotonic()
            self._timers = [x for x in self._timers if not x.cancelled and x.when > now]

    def _reconcile(self) -> None:
        self._kick = None
        with self.lock:
            self._reconciling = True
            try:
                for _ in range(20):
                    self._again = False
                    self.controllers.reconcile()
                    if not self._again:
                        break
            finally:
                self._reconciling = False
        if self._again:
            self._again = False
            self.kick()

    def later(self, delay: float, fn: Any) -> Timer:
        """Run `fn` on the loop thread with the cluster lock held."""

        def run() -> None:
            with self.lock:
                fn()

        t = self.loop.call_later(delay, run)
        self._track(t)
        return t

    def stop(self) -> None:
        for t in self._timers:
            t.cancel()
        if self._kick:
            self._kick.cancel()
        self.controllers.stop()

    # ------------------------------------------------------------------ events and history
    def log(self, kind: str, message: str, **extra: Any) -> None:
        """Control-plane history the control API exposes (not Kubernetes Events)."""
        self.history.append({"time": now_iso(), "type": kind, "message": message, **extra})

    def event(self, obj: dict[str, Any], etype: str, reason: str, message: str, component: str,
              host: str = "") -> None:
        """Record a core/v1 Event about `obj`, aggregating repeats like the event recorder."""
        if not self.record_events:
            return
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message, component)
        now = now_iso()
        rt = self.rt("events")
        with self.lock:
            name = self._event_names.get(key)
            existing = self.store.get("events", ns, name) if name else None
            if existing:
                existing["count"] = existing.get("count", 1) + 1
                existing["lastTimestamp"] = now
                self.store.put("events", existing, rt.field_getter)
                return
            name = f"{meta.get('name', 'unknown')}.{time.time_ns():x}"
            if len(self._event_names) > 5000:
                self._event_names.clear()
            self._event_names[key] = name
            ev = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": name, "namespace": ns, "uid": new_uid(), "creationTimestamp": now},
                "involvedObject": {"kind": obj.get("kind", ""), "namespace": meta.get("namespace", ""),
                                   "name": meta.get("name", ""), "uid": meta.get("uid", ""),
                                   "apiVersion": obj.get("apiVersion", ""),
                                   "resourceVersion": meta.get("resourceVersion", "")},
                "reason": reason, "message": message,
                "source": {"component": component, **({"host": host} if host else {})},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": etype,
                "eventTime": None, "reportingComponent": "", "reportingInstance": "",
            }
            if not meta.get("namespace"):
                ev["involvedObject"].pop("namespace")
            self.store.put("events", ev, rt.field_getter)
            if self.store.count("events") > 3000:
                oldest = sorted(self.store.entries("events"), key=lambda kv: kv[1].rv)[:500]
                for (ens, ename), _ in oldest:
                    self.store.remove("events", ens, ename)

    # ------------------------------------------------------------------ garbage collection helpers
    def orphan_dependents(self, uid: str) -> None:
        for key in list(self.store.keys()):
            rt = self.types().by_key.get(key)
            if rt is None:
                continue
            for (_ns, _name), e in self.store.entries(key):
                if uid.encode() not in e.data:
                    continue
                obj = e.obj()
                refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                if refs != obj["metadata"].get("ownerReferences"):
                    obj["metadata"]["ownerReferences"] = refs
                    if not refs:
                        del obj["metadata"]["ownerReferences"]
                    self.api._write_update(rt, e.obj(), e, obj, None)

    # ------------------------------------------------------------------ eviction
    def evict(self, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        from .controllers.disruption import evict

        return evict(self, ns, name, body)

    def on_restore(self) -> None:
        """After an etcd restore: reload CRDs, let kubelets re-register and controllers converge."""
        self._reload_crds()
        self._event_names.clear()
        self.controllers._cache.clear()  # a restore inside a pass must not leave it reading the old state
        from .controllers.upgrades import forget_host_runs

        forget_host_runs(self)  # the restored pods start afresh; callbacks of the old runs do nothing
        kub = self.controllers.kubelets
        kub._lease_meta.clear()
        kub._observed.clear()
        for rt in self.nodes.values():
            if rt.up and not rt.upgrading and self.store.entry("nodes", "", rt.name) is None:
                kub.register(rt)
            rt.last_status = 0.0
        self.kick()

    def require_online(self) -> None:
        if not self.online:
            raise errors.service_unavailable("the cluster is offline")
