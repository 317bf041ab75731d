"""Draining a node the way ``kubectl drain`` does, one step at a time so a batch drains together.

A step looks at the pods still on the node and evicts those that may go:
mirror pods and system-upgrade-controller's pods (label ``upgrade.cattle.io/controller``,
which the node operation itself needs) are left alone; DaemonSet pods are skipped with ``ignore_daemonsets`` (else the
drain stops); pods no controller manages need ``force``; pods with emptyDir volumes need
``delete_local_data``. Evictions go through the eviction API, so PodDisruptionBudgets hold:
a 429 is retried (with a growing pause, up to 5 s) until the drain's ``timeout``.
The drain is done when no pod that had to go is left on the node.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from clusters.nodeops.api import ClusterApi

RETRY_FIRST, RETRY_MAX = 0.25, 5.0
SUC_LABEL = "upgrade.cattle.io/controller"


class DrainError(Exception):
    """The drain cannot succeed as configured (e.g. an unmanaged pod without force)."""


@dataclass
class DrainState:
    """One node's drain in progress (kept in memory: a resumed job simply drains again)."""

    node: str
    started: float = field(default_factory=time.monotonic)
    retry_at: dict[str, float] = field(default_factory=dict)
    retry_pause: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    evicted: int = 0
    warned: set[str] = field(default_factory=set)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass
class DrainStep:
    done: bool
    remaining: list[str]
    warnings: list[str]


def _controller(pod: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def _key(pod: dict[str, Any]) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


def classify(pods: list[dict[str, Any]], options: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Split pods into (to evict, warnings, errors), with kubectl drain's rules and words."""
    evict, warnings, errors = [], [], []
    unmanaged, local, daemons = [], [], []
    for pod in pods:
        meta = pod["metadata"]
        if (meta.get("annotations") or {}).get("kubernetes.io/config.mirror"):
            continue
        if SUC_LABEL in (meta.get("labels") or {}):
            continue  # system-upgrade-controller and its Jobs stay, as SUC's own drains leave them
        finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        owner = _controller(pod)
        if owner is not None and owner.get("kind") == "DaemonSet" and not finished:
            daemons.append(_key(pod))
            continue
        if owner is None and not finished:
            unmanaged.append(_key(pod))
            if not options.get("force"):
                continue
        if any("emptyDir" in v for v in (pod.get("spec") or {}).get("volumes") or []) and not finished:
            local.append(_key(pod))
            if not options.get("delete_local_data"):
                continue
        evict.append(pod)
    if daemons:
        if options.get("ignore_daemonsets", True):
            warnings.append(f"ignoring DaemonSet-managed Pods: {', '.join(daemons)}")
        else:
            errors.append(f"cannot delete DaemonSet-managed Pods (set ignore_daemonsets): {', '.join(daemons)}")
    if unmanaged:
        if options.get("force"):
            warnings.append(f"deleting Pods not managed by a controller: {', '.join(unmanaged)}")
        else:
            errors.append("cannot delete Pods not managed by ReplicationController, ReplicaSet, Job, DaemonSet or "
                          f"StatefulSet (set force): {', '.join(unmanaged)}")
    if local:
        if options.get("delete_local_data"):
            warnings.append(f"deleting Pods with local storage: {', '.join(local)}")
        else:
            errors.append(f"cannot delete Pods with local storage (set delete_local_data): {', '.join(local)}")
    return evict, warnings, errors


def step(api: ClusterApi, state: DrainState, options: dict[str, Any]) -> DrainStep:
    """Evict what may go now; raise DrainError if the drain cannot succeed."""
    pods = api.pods_on(state.node)
    evict, warnings, errors = classify(pods, options)
    if errors:
        raise DrainError("; ".join(errors))
    grace = options.get("grace_period", -1)
    grace = None if grace is None or grace < 0 else int(grace)
    now = time.monotonic()
    for pod in evict:
        key = _key(pod)
        if pod["metadata"].get("deletionTimestamp") or state.retry_at.get(key, 0) > now:
            continue
        refusal = api.evict(pod["metadata"]["namespace"], pod["metadata"]["name"], grace)
        if refusal:
            pause = min(RETRY_MAX, state.retry_pause.get(key, RETRY_FIRST / 2) * 2)
            state.retry_pause[key], state.retry_at[key] = pause, now + pause
            state.refused[key] = refusal
        else:
            state.evicted += 1
            state.refused.pop(key, None)
            state.retry_at.pop(key, None)
    new_warnings = [w for w in warnings if w not in state.warned]
    state.warned.update(new_warnings)
    return DrainStep(done=not evict, remaining=[_key(p) for p in evict], warnings=new_warnings)


def timeout_reason(state: DrainState, remaining: list[str], timeout: int) -> str:
    why = "; ".join(f"{pod}: {msg}" for pod, msg in state.refused.items() if pod in remaining)
    return (f"draining node {state.node} did not finish within {timeout} s; still on it: {', '.join(remaining)}"
            + (f" (evictions refused: {why})" if why else ""))
