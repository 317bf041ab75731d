"""The default scheduler: filters like kube-scheduler's predicates, scores to spread.

Filters: node Ready, not cordoned (unless tolerated), taints tolerated,
nodeSelector/required affinity, pod count and cpu/memory requests.  Score:
fewest pods of the same owner on the node, then fewest pods, then name.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..util import dig, now_iso, parse_quantity, set_condition
from . import node_ready, pod_active
from .workloads import node_matches, tolerates

if TYPE_CHECKING:
    from ..cluster import Cluster
    from . import ControllerManager


def _requests(pod: dict[str, Any]) -> tuple[float, float]:
    cpu = mem = 0.0
    for c in dig(pod, "spec", "containers", default=[]):
        r = dig(c, "resources", "requests", default={}) or {}
        cpu += parse_quantity(r.get("cpu"))
        mem += parse_quantity(r.get("memory"))
    return cpu, mem


def _owner_uid(pod: dict[str, Any]) -> str:
    for r in dig(pod, "metadata", "ownerReferences", default=[]):
        if r.get("controller"):
            return r.get("uid", "")
    return ""


def schedule(cluster: Cluster, cm: ControllerManager) -> None:
    pods = cm.objs("pods")
    pending = [p for p in pods if not dig(p, "spec", "nodeName") and pod_active(p)
               and dig(p, "spec", "schedulerName", default="default-scheduler") == "default-scheduler"]
    if not pending:
        return
    nodes = cm.objs("nodes")
    usage: dict[str, list[float]] = {n["metadata"]["name"]: [0, 0.0, 0.0] for n in nodes}
    by_owner: dict[tuple[str, str], int] = {}
    for p in pods:
        node = dig(p, "spec", "nodeName")
        if node in usage and dig(p, "status", "phase") not in ("Succeeded", "Failed"):
            u = usage[node]
            cpu, mem = _requests(p)
            u[0] += 1
            u[1] += cpu
            u[2] += mem
            key = (node, _owner_uid(p))
            by_owner[key] = by_owner.get(key, 0) + 1
    by_name = {n["metadata"]["name"]: n for n in nodes}
    verdicts: dict[tuple[str, str], str | None] = {}  # (placement key, node) -> static filter verdict
    for pod in sorted(pending, key=lambda p: p["metadata"].get("creationTimestamp", "")):
        tols = dig(pod, "spec", "tolerations", default=[]) or []
        cpu, mem = _requests(pod)
        owner = _owner_uid(pod)
        reasons: dict[str, int] = {}
        best = None
        best_score: tuple[int, float, str] | None = None
        pinned = _pinned_node(pod)
        candidates = [by_name[pinned]] if pinned in by_name else nodes
        if pinned and pinned not in by_name:
            candidates = []
        pkey = json.dumps([tols, dig(pod, "spec", "nodeSelector"), dig(pod, "spec", "affinity")], sort_keys=True)
        for n in candidates:
            name = n["metadata"]["name"]
            vk = (pkey, name)
            if vk not in verdicts:
                verdicts[vk] = _static_filter(n, pod, tols)
            why = verdicts[vk] or _fits(n, usage[name], cpu, mem)
            if why:
                reasons[why] = reasons.get(why, 0) + 1
                continue
            score = (by_owner.get((name, owner), 0), usage[name][0], name)
            if best_score is None or score < best_score:
                best, best_score = n, score
        if best is None:
            msg = f"0/{len(nodes)} nodes are available: " + ", ".join(
                f"{c} {r}" for r, c in sorted(reasons.items())) + "." if nodes else "no nodes available to schedule pods"
            cond = next((c for c in dig(pod, "status", "conditions", default=[]) if c.get("type") == "PodScheduled"), None)
            if cond is None or cond.get("message") != msg:
                fresh = cm.fresh("pods", pod)
                if fresh:
                    set_condition(fresh.setdefault("status", {}), "PodScheduled", "False", "Unschedulable", msg,
                                  now_iso(), probe=True)
                    cm.update("pods", fresh, status=True)
                    cluster.event(pod, "Warning", "FailedScheduling", msg, "default-scheduler")
            continue
        name = best["metadata"]["name"]
        try:
            cluster.api.bind(pod["metadata"]["namespace"], pod["metadata"]["name"],
                             {"target": {"kind": "Node", "name": name}})
        except Exception:  # pod vanished or was bound meanwhile
            continue
        u = usage[name]
        u[0] += 1
        u[1] += cpu
        u[2] += mem
        by_owner[(name, owner)] = by_owner.get((name, owner), 0) + 1
        cluster.event(pod, "Normal", "Scheduled",
                      f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} to {name}",
                      "default-scheduler")


def _pinned_node(pod: dict[str, Any]) -> str | None:
    """DaemonSet pods name their node in a matchFields term; only that node can fit."""
    terms = dig(pod, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                "nodeSelectorTerms", default=None)
    if terms and len(terms) == 1:
        for f in terms[0].get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return None


def _static_filter(node: dict[str, Any], pod: dict[str, Any], tols: list[dict[str, Any]]) -> str | None:
    if not node_ready(node):
        return "node(s) were not ready"
    if dig(node, "spec", "unschedulable") and not tolerates(
            tols, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
        return "node(s) were unschedulable"
    for t in dig(node, "spec", "taints", default=[]) or []:
        if t.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tols, t):
            return "node(s) had taints that the pod didn't tolerate"
    if not node_matches(node, pod.get("spec") or {}):
        return "node(s) didn't match node selector"
    return None


def _fits(node: dict[str, Any], usage: list[float], cpu: float, mem: float) -> str | None:
    alloc = dig(node, "status", "allocatable", default={}) or {}
    if usage[0] + 1 > parse_quantity(alloc.get("pods", "110")):
        return "Too many pods"
    if cpu and usage[1] + cpu > parse_quantity(alloc.get("cpu", "0")):
        return "Insufficient cpu"
    if mem and usage[2] + mem > parse_quantity(alloc.get("memory", "0")):
        return "Insufficient memory"
    return None
