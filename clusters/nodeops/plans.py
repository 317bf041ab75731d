"""What Corral asks of nodes, as system-upgrade-controller Plans, and how it knows a node is done.

An ``Operation`` is one change to nodes: a Kubernetes version (the distribution's upgrade image,
tag = version) or kubelet arguments (Corral's node-config image with ``--kubelet-arg=name=value``
arguments). ``plan_body`` turns it into an ``upgrade.cattle.io/v1`` Plan for a list of nodes.

A node is done with a Plan when SUC labelled it ``plan.upgrade.cattle.io/<plan>=<status.latestHash>``
and it is Ready (and, for a version, its kubelet reports that version). A node's SUC Job
(``upgrade.cattle.io/plan`` / ``upgrade.cattle.io/node`` labels) with condition Failed=True means
the operation failed there; the Job's reason and message say why.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from clusters.nodeops.images import NODE_CONFIG_IMAGE, node_config_version, upgrade_image

GROUP, VERSION, PLURAL = "upgrade.cattle.io", "v1", "plans"
NAMESPACE = "system-upgrade"
SERVICE_ACCOUNT = "system-upgrade"
PLAN_LABEL = "plan.upgrade.cattle.io/"
JOB_PLAN, JOB_NODE = "upgrade.cattle.io/plan", "upgrade.cattle.io/node"
HOSTNAME = "kubernetes.io/hostname"
MANAGED_BY = {"app.kubernetes.io/managed-by": "corral"}
# Upgrade Jobs must run on every node whatever its role's taints (RKE, RKE2/k3s and older spellings).
TOLERATIONS = [
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/master", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/controlplane", "operator": "Exists"},
    {"key": "node-role.kubernetes.io/etcd", "operator": "Exists"},
]
KUBELET_ARG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

KUBERNETES_VERSION = "kubernetes-version"
KUBELET_ARGS = "kubelet-args"


@dataclass(frozen=True)
class Operation:
    """One change to nodes, run by SUC as ``image:version`` with ``args``."""

    kind: str
    distribution: str
    image: str
    version: str
    args: tuple[str, ...] = ()
    kubelet_version: str = ""  # what the kubelet must report afterwards (version changes only)
    summary: str = field(default="", compare=False)

    @classmethod
    def kubernetes_version(cls, distribution: str, target: str) -> Operation:
        return cls(KUBERNETES_VERSION, distribution, upgrade_image(distribution), target,
                   kubelet_version=target, summary=f"Kubernetes {target}")

    @classmethod
    def kubelet_args(cls, distribution: str, args: dict[str, Any]) -> Operation:
        return cls(KUBELET_ARGS, distribution, NODE_CONFIG_IMAGE, node_config_version(),
                   args=kubelet_arg_flags(args),
                   summary="kubelet arguments " + (", ".join(f"{k}={v}" for k, v in sorted(args.items())) or "(none)"))

    def done(self, node: dict[str, Any], plan: str, plan_hash: str | None) -> bool:
        """SUC finished this plan on the node and the node is back as it should be."""
        if not plan_hash or node_labels(node).get(PLAN_LABEL + plan) != plan_hash or not is_ready(node):
            return False
        return not self.kubelet_version or kubelet_version(node) == self.kubelet_version


def kubelet_arg_flags(args: dict[str, Any]) -> tuple[str, ...]:
    """``{"max-pods": 250}`` → ``("--kubelet-arg=max-pods=250",)``; names and values checked."""
    flags = []
    for name, value in sorted(args.items()):
        if not KUBELET_ARG_NAME.match(str(name)):
            raise ValueError(f"{name!r} is not a kubelet flag name")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if any(c in text for c in "\n\r\0"):
            raise ValueError(f"the value of {name} must be one line")
        flags.append(f"--kubelet-arg={name}={text}")
    return tuple(flags)


def node_labels(node: dict[str, Any]) -> dict[str, str]:
    return (node.get("metadata") or {}).get("labels") or {}


def kubelet_version(node: dict[str, Any]) -> str:
    return ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")


def is_ready(node: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def hostname(node: dict[str, Any]) -> str:
    return node_labels(node).get(HOSTNAME) or node["metadata"]["name"]


def hostname_selector(hostnames: list[str]) -> dict[str, Any]:
    return {"matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": sorted(set(hostnames))}]}


def plan_body(name: str, op: Operation, *, selector: dict[str, Any], concurrency: int,
              labels: dict[str, str] | None = None, cordon: bool | None = False, drain: dict[str, Any] | None = None,
              prepare: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Plan that runs ``op`` on the nodes ``selector`` picks, ``concurrency`` at a time."""
    upgrade: dict[str, Any] = {"image": op.image}
    if op.args:
        upgrade["args"] = list(op.args)
    spec: dict[str, Any] = {
        "version": op.version,
        "concurrency": max(1, int(concurrency)),
        "nodeSelector": selector,
        "serviceAccountName": SERVICE_ACCOUNT,
        "tolerations": [dict(t) for t in TOLERATIONS],
        "upgrade": upgrade,
    }
    if drain is not None:
        spec["drain"] = drain
    elif cordon is not None:  # None: say nothing (SUC's default, no cordon)
        spec["cordon"] = bool(cordon)
    if prepare is not None:
        spec["prepare"] = prepare
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Plan",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {**MANAGED_BY, **(labels or {})}},
        "spec": spec,
    }


def job_failure(job: dict[str, Any]) -> str:
    """The failure of a SUC Job in words, or "" while it has not failed."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Failed" and cond.get("status") == "True":
            words = ": ".join(p for p in (cond.get("reason"), cond.get("message")) if p)
            return f"system-upgrade-controller job {job['metadata']['name']} failed" + (f": {words}" if words else "")
    return ""


def job_attempts(job: dict[str, Any]) -> str:
    status = job.get("status") or {}
    return f"job {job['metadata']['name']}: {status.get('active') or 0} running, {status.get('failed') or 0} failed attempt(s)"
