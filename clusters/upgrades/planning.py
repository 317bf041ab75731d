"""Which nodes go together: the batches of an upgrade, worked out from the nodes and the strategy.

rke: etcd nodes one at a time, then control-plane nodes in batches of
``max_unavailable_controlplane``, then workers in batches of ``max_unavailable_worker``
(a count, or a percentage of the role's nodes rounded down; never less than 1).
A node with several roles is upgraded once, with the first of etcd, controlplane, worker.
Parallel mode (the old behaviour) puts every node of a role in one batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Reading a node's JSON belongs to the node-operations layer; the engines import these from here too.
from clusters.nodeops.plans import is_ready, kubelet_version, node_labels  # noqa: F401

ROLE_ORDER = ("etcd", "controlplane", "worker")
K3S_ROLE_ORDER = ("server", "agent")


@dataclass(frozen=True)
class PlannedNode:
    name: str
    role: str
    batch: int
    cordoned_before: bool
    version: str


def batch_size(limit: str | int, count: int) -> int:
    """How many of ``count`` nodes may be out of service at once: "2" → 2, "10%" of 25 → 2, never below 1."""
    text = str(limit).strip()
    if text.endswith("%"):
        size = count * int(text[:-1]) // 100
    else:
        size = int(text)
    return max(1, min(size, count)) if count else 1


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def rke_role(node: dict[str, Any]) -> str:
    """etcd, controlplane or worker; RKE2/k3s servers (``control-plane``/``master``) count as controlplane."""
    labels = node_labels(node)
    for role in ROLE_ORDER:
        if labels.get(f"node-role.kubernetes.io/{role}") in ("true", ""):
            return role
        if role == "controlplane" and any(labels.get(f"node-role.kubernetes.io/{alias}") in ("true", "")
                                          for alias in ("control-plane", "master")):
            return role
    return "worker"


def k3s_role(node: dict[str, Any]) -> str:
    labels = node_labels(node)
    is_server = labels.get("node-role.kubernetes.io/master") == "true" or \
        labels.get("node-role.kubernetes.io/control-plane") == "true"
    return "server" if is_server else "agent"


def is_cordoned(node: dict[str, Any]) -> bool:
    return bool((node.get("spec") or {}).get("unschedulable"))


def plan_rke(nodes: list[dict[str, Any]], strategy: dict[str, Any], mode: str) -> list[PlannedNode]:
    """Batches in upgrade order, numbered from 0 across roles."""
    by_role: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLE_ORDER}
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        by_role[rke_role(node)].append(node)
    limits = {
        "etcd": 1,
        "controlplane": strategy.get("max_unavailable_controlplane", "1"),
        "worker": strategy.get("max_unavailable_worker", "10%"),
    }
    planned: list[PlannedNode] = []
    batch = 0
    for role in ROLE_ORDER:
        members = by_role[role]
        if not members:
            continue
        size = len(members) if mode == "parallel" else batch_size(limits[role], len(members))
        for group in chunks(members, size):
            planned.extend(PlannedNode(n["metadata"]["name"], role, batch, is_cordoned(n), kubelet_version(n))
                           for n in group)
            batch += 1
    return planned


def plan_k3s(nodes: list[dict[str, Any]]) -> list[PlannedNode]:
    """k3s nodes are batched by system-upgrade-controller; the portal only orders servers before agents."""
    planned = []
    for node in sorted(nodes, key=lambda n: (K3S_ROLE_ORDER.index(k3s_role(n)), n["metadata"]["name"])):
        role = k3s_role(node)
        planned.append(PlannedNode(node["metadata"]["name"], role, K3S_ROLE_ORDER.index(role),
                                   is_cordoned(node), kubelet_version(node)))
    return planned


def describe(planned: list[PlannedNode]) -> str:
    """"3 etcd in 3 batches, 3 controlplane in 3, 94 worker in 11" for the job log."""
    parts = []
    for role in (*ROLE_ORDER, *K3S_ROLE_ORDER):
        members = [p for p in planned if p.role == role]
        if members:
            parts.append(f"{len(members)} {role} in {len({p.batch for p in members})} batch(es)")
    return ", ".join(parts)
