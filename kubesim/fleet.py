"""Fleet files and bootstrapping clusters into a running state.

A fleet file (YAML) lists clusters with their kind, version, nodes per role
and workloads; `count` repeats a cluster (`name` may hold `{i}`).  Bootstrap
runs the real controllers with instant pod starts, so a cluster comes up as
if it had been running for a while.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import authz
from .cluster import Cluster, NodeRuntime, Timings
from .controllers import kubebench
from .controllers.upgrades import SUC_NAME, SUC_NS, plan_crd
from .loop import Loop
from .resources import parse_version

KINDS = ("rke", "k3s", "imported")
DEFAULT_ROLES = {"rke": ("etcd", "controlplane", "worker"), "k3s": ("server", "agent"),
                 "imported": ("controlplane", "worker")}


@dataclass
class NodeSpec:
    name: str
    roles: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    fail_upgrade: bool = False  # its upgrades never come back Ready (like `Fleet.fail_node_upgrade`)
    fail_jobs: str = ""  # every upgrade-job container on it exits 1 with this message
    fail_kube_bench: str = ""  # kube-bench on it prints this instead of its report ...
    fail_kube_bench_exit: int = 1  # ... and exits with this code


@dataclass
class ClusterSpec:
    name: str
    kind: str
    version: str
    nodes: list[NodeSpec]
    workloads: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    token: str | None = None
    kubelet_args: dict[str, str] = field(default_factory=dict)
    system_upgrade_controller: bool | None = None  # None: installed on k3s clusters only
    users: list[dict[str, Any]] = field(default_factory=list)  # [{name, token, groups}] (authz.py)
    service_accounts: list[dict[str, Any]] = field(default_factory=list)  # [{name, namespace, token}]

    @property
    def has_suc(self) -> bool:
        return self.kind == "k3s" if self.system_upgrade_controller is None else self.system_upgrade_controller

    metrics_server: bool | None = None  # None: on k3s clusters only (metrics.py serves metrics.k8s.io while it runs)

    @property
    def has_metrics_server(self) -> bool:
        return self.kind == "k3s" if self.metrics_server is None else self.metrics_server


def _nodes(name: str, kind: str, raw: Any) -> list[NodeSpec]:
    if raw is None:
        raw = {"etcd": 1, "controlplane": 1, "worker": 1} if kind == "rke" else (
            {"server": 1, "agent": 1} if kind == "k3s" else {"controlplane": 1, "worker": 1})
    out: list[NodeSpec] = []
    if isinstance(raw, dict):
        for role, count in raw.items():
            for i in range(1, int(count) + 1):
                out.append(NodeSpec(f"{name}-{role}-{i}", (role,)))
    elif isinstance(raw, list):
        for i, n in enumerate(raw, 1):
            roles = n.get("roles") or [n.get("role", "worker")]
            fail_jobs = n.get("fail_jobs") or ""
            if fail_jobs is True:
                fail_jobs = "upgrade script failed (injected by the fleet file)"
            bench_output, bench_exit = _kube_bench_fault(name, n.get("fail_kube_bench"))
            out.append(NodeSpec(n.get("name") or f"{name}-node-{i}", tuple(roles), dict(n.get("labels") or {}),
                                bool(n.get("fail_upgrade", False)), str(fail_jobs), bench_output, bench_exit))
    else:
        raise ValueError(f"cluster {name}: nodes must be a mapping of role to count or a list")
    if kind == "k3s":
        for n in out:
            n.roles = tuple("server" if r in ("server", "master", "controlplane") else ("agent" if r in ("agent", "worker") else r)
                            for r in n.roles)
    return out


def _kube_bench_fault(cluster: str, raw: Any) -> tuple[str, int]:
    """``fail_kube_bench``: a message (kube-bench exits 1 with it), ``true`` (it finds none of the programs it
    checks, as when the pod cannot see the host's processes), or ``{output: TEXT, exit_code: N}`` (it prints
    TEXT instead of its JSON report and exits N, 0 by default)."""
    if raw is None or raw is False or raw == "":
        return "", 1
    if raw is True:
        return kubebench.NO_PROGRAMS, 1
    if isinstance(raw, dict):
        if "output" not in raw:
            raise ValueError(f"cluster {cluster}: fail_kube_bench wants a message, true, or {{output, exit_code}}")
        return str(raw["output"]), int(raw.get("exit_code", 0))
    return str(raw), 1


def load_spec(source: str | os.PathLike[str] | dict[str, Any]) -> tuple[list[ClusterSpec], dict[str, Any]]:
    """Parse a fleet file (path or already-loaded dict) into cluster specs and defaults."""
    if isinstance(source, dict):
        doc = source
    else:
        with open(source) as fh:
            doc = yaml.safe_load(fh) or {}
    defaults = dict(doc.get("defaults") or {})
    specs: list[ClusterSpec] = []
    for raw in doc.get("clusters") or []:
        raw = {**{k: v for k, v in defaults.items() if k not in ("time_scale", "timings")}, **raw}
        count = int(raw.get("count", 1))
        for i in range(count):
            name = str(raw["name"]).format(i=i) if count > 1 or "{i" in str(raw["name"]) else str(raw["name"])
            kind = raw.get("kind", "imported")
            if kind not in KINDS:
                raise ValueError(f"cluster {name}: kind must be one of {', '.join(KINDS)}")
            version = str(raw.get("version", "v1.18.6"))
            parse_version(version)
            if kind == "k3s" and "+k3s" not in version:
                raise ValueError(f"cluster {name}: a k3s version looks like v1.17.4+k3s1")
            specs.append(ClusterSpec(name, kind, version, _nodes(name, kind, raw.get("nodes")),
                                     copy.deepcopy(list(raw.get("workloads") or [])),
                                     {**(defaults.get("timings") or {}), **(raw.get("timings") or {})},
                                     raw.get("token") if count == 1 else None,
                                     {str(k): str(v) for k, v in (raw.get("kubelet_args") or {}).items()},
                                     None if raw.get("system_upgrade_controller") is None
                                     else bool(raw["system_upgrade_controller"])))
            specs[-1].users = copy.deepcopy(list(raw.get("users") or []))
            if raw.get("metrics_server") is not None:
                specs[-1].metrics_server = bool(raw["metrics_server"])
            specs[-1].service_accounts = copy.deepcopy(list(raw.get("service_accounts") or []))
            specs[-1].workloads += [{"manifest": m} for m in copy.deepcopy(list(raw.get("rbac") or []))]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("cluster names must be unique")
    return specs, defaults


# ---------------------------------------------------------------------- objects installed at bootstrap
def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _deployment(name: str, ns: str, replicas: int, image: str, labels: dict[str, str] | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    spec: dict[str, Any] = {"containers": [{"name": name, "image": image}]}
    spec.update(extra or {})
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}}


def _daemonset(name: str, ns: str, image: str, tolerate_all: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": name, "image": image}]}
    if tolerate_all:
        spec["tolerations"] = [{"operator": "Exists"}]
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
            "spec": {"selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": spec}}}


def system_objects(spec: ClusterSpec, minor: int) -> list[dict[str, Any]]:
    """What the distribution itself runs (CoreDNS, ..., system-upgrade-controller if the fleet says so)."""
    objs: list[dict[str, Any]] = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
         "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
         "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}},
    ]
    for comp, msg in (("scheduler", "ok"), ("controller-manager", "ok"), ("etcd-0", '{"health":"true"}')):
        objs.append({"apiVersion": "v1", "kind": "ComponentStatus", "metadata": {"name": comp},
                     "conditions": [{"type": "Healthy", "status": "True", "message": msg}]})
    dns_extra = {"tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}], "priorityClassName": "system-cluster-critical"}
    if spec.kind == "rke":
        objs.append(_deployment("coredns", "kube-system", 1, "rancher/coredns-coredns:1.3.1", {"k8s-app": "kube-dns"}, dns_extra))
    elif spec.kind == "k3s":
        objs.append(_deployment("coredns", "kube-system", 1, "rancher/coredns-coredns:1.6.3", {"k8s-app": "kube-dns"}, dns_extra))
        objs.append(_deployment("local-path-provisioner", "kube-system", 1, "rancher/local-path-provisioner:v0.0.11"))
    else:
        objs.append(_deployment("coredns", "kube-system", 2, "k8s.gcr.io/coredns:1.6.7", {"k8s-app": "kube-dns"}, dns_extra))
    if spec.has_metrics_server:
        image = "rancher/metrics-server:v0.3.6" if spec.kind == "k3s" else "registry.k8s.io/metrics-server/metrics-server:v0.6.4"
        objs.append(_deployment("metrics-server", "kube-system", 1, image, {"k8s-app": "metrics-server"}))
    objs += authz.default_rbac(minor)  # system:discovery, system:public-info-viewer, system:basic-user
    objs.append(kubebench.kubeadm_config(spec.kind, spec.version))  # the API server's flags (kubebench.py)
    if spec.has_suc:
        objs = [plan_crd(minor), *objs, *suc_objects(spec.kind)]
    return objs


def suc_objects(kind: str) -> list[dict[str, Any]]:
    """system-upgrade-controller as its manifest installs it (namespace, account, binding, Deployment)."""
    cp_label = "node-role.kubernetes.io/controlplane" if kind == "rke" else (
        "node-role.kubernetes.io/master" if kind == "k3s" else "node-role.kubernetes.io/controlplane")
    tolerations = [{"key": "CriticalAddonsOnly", "operator": "Exists"}] + [
        {"key": k, "operator": "Exists", "effect": "NoSchedule"}
        for k in ("node-role.kubernetes.io/master", "node-role.kubernetes.io/controlplane",
                  "node-role.kubernetes.io/control-plane")] + [
        {"key": "node-role.kubernetes.io/etcd", "operator": "Exists", "effect": "NoExecute"}]
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": cp_label, "operator": "Exists"}]}]}}}
    return [
        _ns(SUC_NS),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "system-upgrade", "namespace": SUC_NS}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system-upgrade"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": "system-upgrade", "namespace": SUC_NS}]},
        _deployment(SUC_NAME, SUC_NS, 1, "rancher/system-upgrade-controller:v0.14.0",
                    {"upgrade.cattle.io/controller": SUC_NAME},
                    {"serviceAccountName": "system-upgrade", "affinity": affinity, "tolerations": tolerations}),
    ]


def workload_objects(spec: ClusterSpec) -> list[dict[str, Any]]:
    """Expand fleet-file workload shorthands into Kubernetes objects."""
    out: list[dict[str, Any]] = []
    for w in spec.workloads:
        if "manifest" in w:
            out.append(copy.deepcopy(w["manifest"]))
            continue
        if "deployment" in w:
            d = w["deployment"]
            ns = d.get("namespace", "default")
            if ns not in ("default", "kube-system"):
                out.append(_ns(ns))
            labels = d.get("labels") or {"app": d["name"]}
            out.append(_deployment(d["name"], ns, int(d.get("replicas", 1)), d.get("image", "nginx:1.17.9"), labels))
            pdb = w.get("pdb") or d.get("pdb")
            if pdb:
                body = {k: pdb[k] for k in ("minAvailable", "maxUnavailable") if k in pdb}
                out.append({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
                            "metadata": {"name": pdb.get("name", d["name"]), "namespace": ns},
                            "spec": {**body, "selector": {"matchLabels": dict(labels)}}})
        elif "daemonset" in w:
            d = w["daemonset"]
            out.append(_daemonset(d["name"], d.get("namespace", "default"), d.get("image", "busybox:1.31"),
                                  bool(d.get("tolerate_all", False))))
        else:
            raise ValueError(f"cluster {spec.name}: unknown workload {sorted(w)}")
    return out


def build_cluster(spec: ClusterSpec, loop: Loop, timings: Timings, time_scale: float, base_url: str) -> Cluster:
    """Create a cluster and bring it to a settled running state."""
    base_path = f"/k8s/clusters/{spec.name}"
    t = Timings.from_dict(spec.timings, timings).scaled(time_scale)
    c = Cluster(spec.name, spec.kind, spec.version, loop, t, token=spec.token, base_path=base_path,
                server_url=base_url + base_path)
    c.time_scale = time_scale
    c.record_events = False
    c.bootstrapping = True
    api = c.api
    with c.lock:
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            api.create(c.rt("namespaces"), None, _ns(ns))
        for i, n in enumerate(spec.nodes):
            rt = NodeRuntime(n.name, n.roles, spec.version, f"10.0.{(i // 250) % 250}.{i % 250 + 10}",
                             extra_labels=n.labels, kubelet_args=dict(spec.kubelet_args),
                             fail_upgrade=n.fail_upgrade, fail_jobs=n.fail_jobs,
                             fail_kube_bench=n.fail_kube_bench, fail_kube_bench_exit=n.fail_kube_bench_exit)
            c.nodes[n.name] = rt
            c.controllers.kubelets.register(rt)
        for obj in system_objects(spec, c.minor) + workload_objects(spec):
            create_object(c, obj)
        if spec.users or spec.service_accounts:
            authz.install(c, spec.users, spec.service_accounts)
        settle(c)
        c.store.reset_watch_cache()  # the fleet "has been running": history starts now
    c.record_events = True
    c.bootstrapping = False
    c.controllers.start()
    c.log("cluster", f"cluster {spec.name} ({spec.kind} {spec.version}) started with {len(spec.nodes)} nodes")
    return c


def create_object(c: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    idx = c.types()
    rt = idx.for_api_version(obj.get("apiVersion", ""), obj.get("kind", ""))
    if rt is None:
        raise ValueError(f"cluster {c.name}: {obj.get('apiVersion')}/{obj.get('kind')} is not served by {c.version}")
    ns = (obj.get("metadata") or {}).get("namespace") if rt.namespaced else None
    if rt.namespaced and ns and c.store.entry("namespaces", "", ns) is None:
        c.api.create(c.rt("namespaces"), None, _ns(ns))
    if c.store.entry(rt.key, ns or "", obj["metadata"]["name"]) is not None:
        return c.store.get(rt.key, ns or "", obj["metadata"]["name"]) or {}
    return c.api.create(rt, ns, obj, internal=True)


def settle(c: Cluster, passes: int = 30) -> None:
    """Run controller passes until nothing changes (bootstrap only)."""
    for _ in range(passes):
        before = c.store.rv
        c.controllers.reconcile()
        if c.store.rv == before:
            break
    c.controllers._decoded.clear()
    if c._kick is not None:
        c._kick.cancel()
        c._kick = None
