"""`metrics.k8s.io/v1beta1`: what metrics-server serves, for `kubectl top nodes|pods`.

Served while the cluster "has" metrics-server: Deployment `kube-system/metrics-server` with an
available replica (k3s installs it; the fleet option `metrics_server: true|false` adds or leaves it
out). Otherwise the group is not in discovery and its paths answer 404, so kubectl says
"Metrics API not available", as on a cluster without it.

Usage follows the simulated load and is deterministic: each container of a Running pod on a node
whose kubelet runs uses 30–90 % of its CPU request (5m when it requests none) and 50–90 % of its
memory request (16Mi when none), the fraction fixed by a hash of the pod uid and container name. A
node uses the sum of its pods plus the system's own share (50–70m CPU, 400–500Mi memory). Nodes
whose kubelet is down and their pods have no metrics (metrics-server cannot scrape them).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from . import errors
from .apiserver import Request, Response, json_response
from .selectors import parse_label_selector
from .store import intern_labels
from .util import dig, now_iso, parse_quantity

if TYPE_CHECKING:
    from .cluster import Cluster

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GV = f"{GROUP}/{VERSION}"
WINDOW = "10s"
MI = 1024 * 1024


def available(cluster: Cluster) -> bool:
    e = cluster.store.entry("deployments.apps", "kube-system", "metrics-server")
    if e is None:
        return False
    st = e.obj().get("status") or {}
    return int(st.get("availableReplicas") or st.get("readyReplicas") or 0) >= 1


def _group_doc() -> dict[str, Any]:
    return {"name": GROUP, "versions": [{"groupVersion": GV, "version": VERSION}],
            "preferredVersion": {"groupVersion": GV, "version": VERSION}}


def group_list(cluster: Cluster, doc: dict[str, Any]) -> dict[str, Any]:
    """`/apis` with metrics.k8s.io added when metrics-server runs (it is an aggregated API: listed last)."""
    if available(cluster) and not any(g.get("name") == GROUP for g in doc.get("groups") or []):
        doc = {**doc, "groups": [*(doc.get("groups") or []), _group_doc()]}
    return doc


def _resource_list() -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV, "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ]}


def _frac(*parts: str) -> float:
    return int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def container_usage(pod_uid: str, container: dict[str, Any]) -> tuple[float, float]:
    """(cores, bytes) one container uses."""
    req = dig(container, "resources", "requests", default={}) or {}
    cpu = parse_quantity(req.get("cpu")) or 0.005
    mem = parse_quantity(req.get("memory")) or 16 * MI
    h = _frac(pod_uid, str(container.get("name", "")))
    return cpu * (0.3 + 0.6 * h), mem * (0.5 + 0.4 * h)


def _cpu(cores: float) -> str:
    return f"{int(cores * 1e9)}n"


def _mem(b: float) -> str:
    return f"{int(b // 1024)}Ki"


def _running_nodes(cluster: Cluster) -> set[str]:
    return {n for n, rt in cluster.nodes.items() if rt.kubelet_running}


def _pod_items(cluster: Cluster, ns: str | None, name: str | None) -> list[tuple[dict[str, Any], list[tuple[str, float, float]]]]:
    live = _running_nodes(cluster)
    out = []
    for (_pns, pname), e in cluster.store.entries("pods", ns):
        if name is not None and pname != name:
            continue
        pod = e.obj()
        if dig(pod, "status", "phase") != "Running" or pod["spec"].get("nodeName") not in live:
            continue
        uid = pod["metadata"].get("uid", "")
        usage = [(c.get("name", ""), *container_usage(uid, c)) for c in pod["spec"].get("containers") or []]
        out.append((pod, usage))
    return out


def pod_metrics(cluster: Cluster, ns: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    now = now_iso()
    items = []
    for pod, usage in _pod_items(cluster, ns, name):
        meta = pod["metadata"]
        items.append({"metadata": {"name": meta["name"], "namespace": meta["namespace"], "creationTimestamp": now,
                                   **({"labels": meta["labels"]} if meta.get("labels") else {})},
                      "timestamp": now, "window": WINDOW,
                      "containers": [{"name": c, "usage": {"cpu": _cpu(cpu), "memory": _mem(mem)}}
                                     for c, cpu, mem in usage]})
    return items


def node_metrics(cluster: Cluster, name: str | None = None) -> list[dict[str, Any]]:
    live = _running_nodes(cluster)
    load: dict[str, list[float]] = {}
    for pod, usage in _pod_items(cluster, None, None):
        acc = load.setdefault(pod["spec"]["nodeName"], [0.0, 0.0])
        for _, cpu, mem in usage:
            acc[0] += cpu
            acc[1] += mem
    now = now_iso()
    items = []
    for (_, nname), e in cluster.store.entries("nodes"):
        if nname not in live or (name is not None and nname != name):
            continue
        h = _frac(cluster.name, nname)
        cpu, mem = load.get(nname, [0.0, 0.0])
        cpu += 0.05 + 0.02 * h
        mem += (400 + 100 * h) * MI
        items.append({"metadata": {"name": nname, "creationTimestamp": now,
                                   **({"labels": dict(e.labels)} if e.labels else {})},
                      "timestamp": now, "window": WINDOW, "usage": {"cpu": _cpu(cpu), "memory": _mem(mem)}})
    return items


def handle(cluster: Cluster, path: str, req: Request) -> Response:
    """Everything under /apis/metrics.k8s.io."""
    if not available(cluster):
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    parts = path.strip("/").split("/")[2:]  # drop "apis", group
    if not parts:
        return json_response(200, {"kind": "APIGroup", "apiVersion": "v1", **_group_doc()})
    if parts[0] != VERSION:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    rest = parts[1:]
    if not rest:
        return json_response(200, _resource_list())
    if req.method != "GET" or req.query.get("watch") in ("true", "1") or rest[0] == "watch":
        raise errors.method_not_allowed()
    ns: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    if rest[0] not in ("nodes", "pods") or len(rest) > 2 or (rest[0] == "nodes" and ns is not None):
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
    if plural == "pods" and name is not None and ns is None:
        raise errors.ApiError(404, "NotFound", "the server could not find the requested resource")
    with cluster.lock:
        items = node_metrics(cluster, name) if plural == "nodes" else pod_metrics(cluster, ns, name)
    kind = "NodeMetrics" if plural == "nodes" else "PodMetrics"
    if name is not None:
        if not items:
            raise errors.ApiError(404, "NotFound", f'{plural} "{name}" not found',
                                  {"name": name, "group": GROUP, "kind": plural})
        return json_response(200, {"kind": kind, "apiVersion": GV, **items[0]})
    test = parse_label_selector(req.query.get("labelSelector"))
    if test is not None:
        items = [i for i in items if test(intern_labels(i["metadata"].get("labels")))]
    fsel = req.query.get("fieldSelector") or ""
    for term in filter(None, fsel.split(",")):
        key, _, value = term.partition("=")
        neg = key.endswith("!")
        key, value = key.rstrip("!"), value.lstrip("=")
        if key in ("metadata.name", "metadata.namespace"):
            field = key.split(".")[1]
            items = [i for i in items if (i["metadata"].get(field) == value) != neg]
    return json_response(200, {"kind": f"{kind}List", "apiVersion": GV, "metadata": {},
                               "items": [{**i} for i in items]})
