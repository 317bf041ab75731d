"""Deployment and ReplicaSet controllers, as kube-controller-manager's.

Deployments own ReplicaSets named `<deployment>-<pod-template-hash>`; rolling
updates respect maxSurge/maxUnavailable, Recreate empties the old ReplicaSets
first, and status/conditions read like the real ones (`kubectl rollout status`
relies on them).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ..util import dig, int_or_percent, now_iso, parse_time, set_condition
from . import controller_ref, owned_by, pod_active, pod_from_template, pod_ready, template_hash

if TYPE_CHECKING:
    from ..cluster import Cluster
    from . import ControllerManager


# ---------------------------------------------------------------------- deployments
def _available(rs: dict[str, Any]) -> int:
    return dig(rs, "status", "availableReplicas", default=0)


def deployments(cluster: Cluster, cm: ControllerManager) -> None:
    all_rs = cm.objs("replicasets.apps")
    for d in cm.objs("deployments.apps"):
        if d["metadata"].get("deletionTimestamp"):
            continue
        _sync_deployment(cluster, cm, d, [rs for rs in all_rs if owned_by(rs, d["metadata"]["uid"])])


def _sync_deployment(cluster: Cluster, cm: ControllerManager, d: dict[str, Any], owned: list[dict[str, Any]]) -> None:
    spec = d["spec"]
    meta = d["metadata"]
    ns = meta["namespace"]
    replicas = spec.get("replicas", 1)
    template = copy.deepcopy(spec["template"])
    h = template_hash(template)
    new_rs = None
    for rs in owned:
        if dig(rs, "metadata", "labels", "pod-template-hash") == h:
            new_rs = rs
    old = [rs for rs in owned if rs is not new_rs]
    revision = max([int(dig(rs, "metadata", "annotations", "deployment.kubernetes.io/revision", default="0") or 0)
                    for rs in owned] + [0])
    strategy = spec.get("strategy") or {}
    ru = strategy.get("rollingUpdate") or {}
    surge = int_or_percent(ru.get("maxSurge", "25%"), replicas, True)
    unavail = int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False)
    if strategy.get("type") == "Recreate":
        surge, unavail = 0, replicas
    if surge == 0 and unavail == 0:
        unavail = 1
    if spec.get("paused"):
        _deployment_status(cluster, cm, d, owned, new_rs, replicas, unavail)
        return
    if new_rs is None:
        tmpl = copy.deepcopy(template)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
        sel = copy.deepcopy(spec["selector"])
        sel.setdefault("matchLabels", {})["pod-template-hash"] = h
        old_total = sum(rs["spec"].get("replicas", 0) for rs in old)
        if strategy.get("type") == "Recreate":
            start = 0 if old_total else replicas
        else:
            start = max(0, min(replicas, replicas + surge - old_total))
        rs_obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{h}", "namespace": ns,
                "labels": dict(tmpl["metadata"]["labels"]),
                "annotations": {"deployment.kubernetes.io/desired-replicas": str(replicas),
                                "deployment.kubernetes.io/max-replicas": str(replicas + surge),
                                "deployment.kubernetes.io/revision": str(revision + 1)},
                "ownerReferences": [controller_ref(d)],
            },
            "spec": {"replicas": start, "minReadySeconds": spec.get("minReadySeconds", 0),
                     "selector": sel, "template": tmpl},
        }
        new_rs = cm.create("replicasets.apps", rs_obj)
        if new_rs is None:
            return
        fresh = cm.fresh("deployments.apps", d)
        if fresh:
            fresh["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision + 1)
            cm.update("deployments.apps", fresh)
        cluster.event(d, "Normal", "ScalingReplicaSet", f"Scaled up replica set {rs_obj['metadata']['name']} to {start}",
                      "deployment-controller")
        owned = [*old, new_rs]
    elif old and int(dig(new_rs, "metadata", "annotations", "deployment.kubernetes.io/revision", default="0") or 0) < revision:
        # rolling back to an older template: its ReplicaSet becomes the newest revision
        fresh_rs = cm.fresh("replicasets.apps", new_rs)
        if fresh_rs:
            fresh_rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision + 1)
            new_rs = cm.update("replicasets.apps", fresh_rs) or new_rs
        fresh = cm.fresh("deployments.apps", d)
        if fresh:
            fresh["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision + 1)
            cm.update("deployments.apps", fresh)
    # scale
    new_spec = new_rs["spec"].get("replicas", 0)
    old_total = sum(rs["spec"].get("replicas", 0) for rs in old)
    if strategy.get("type") == "Recreate":
        if old_total:
            for rs in old:
                if rs["spec"].get("replicas", 0):
                    _scale_rs(cluster, cm, d, rs, 0)
            return
        active_old = [p for p in cm.objs("pods", ns) if any(owned_by(p, rs["metadata"]["uid"]) for rs in old)]
        if not active_old and new_spec != replicas:
            _scale_rs(cluster, cm, d, new_rs, replicas)
    else:
        if not old:
            if new_spec != replicas:
                _scale_rs(cluster, cm, d, new_rs, replicas)
        else:
            total = new_spec + old_total
            allowed = replicas + surge - total
            if new_spec < replicas and allowed > 0:
                _scale_rs(cluster, cm, d, new_rs, min(replicas, new_spec + allowed))
                new_spec = min(replicas, new_spec + allowed)
            elif new_spec > replicas:
                _scale_rs(cluster, cm, d, new_rs, replicas)
                new_spec = replicas
            min_available = replicas - unavail
            available = sum(_available(rs) for rs in [new_rs, *old])
            can_remove = available - min_available
            for rs in sorted(old, key=lambda r: r["metadata"]["creationTimestamp"]):
                cur = rs["spec"].get("replicas", 0)
                if cur == 0:
                    continue
                unhealthy = max(0, cur - _available(rs))
                remove = unhealthy + max(0, min(cur - unhealthy, can_remove))
                remove = min(cur, remove)
                if remove > 0:
                    can_remove -= max(0, remove - unhealthy)
                    _scale_rs(cluster, cm, d, rs, cur - remove)
    # history limit
    limit = d["spec"].get("revisionHistoryLimit", 10)
    dead = [rs for rs in old if rs["spec"].get("replicas", 0) == 0 and dig(rs, "status", "replicas", default=0) == 0]
    if len(dead) > limit:
        for rs in sorted(dead, key=lambda r: r["metadata"]["creationTimestamp"])[: len(dead) - limit]:
            cm.delete("replicasets.apps", ns, rs["metadata"]["name"])
    _deployment_status(cluster, cm, d, owned, new_rs, replicas, unavail)


def _scale_rs(cluster: Cluster, cm: ControllerManager, d: dict[str, Any], rs: dict[str, Any], n: int) -> None:
    fresh = cm.fresh("replicasets.apps", rs)
    if not fresh or fresh["spec"].get("replicas") == n:
        return
    before = fresh["spec"].get("replicas", 0)
    fresh["spec"]["replicas"] = n
    fresh["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/desired-replicas"] = str(d["spec"].get("replicas", 1))
    if cm.update("replicasets.apps", fresh) is not None:
        verb = "up" if n > before else "down"
        cluster.event(d, "Normal", "ScalingReplicaSet", f"Scaled {verb} replica set {rs['metadata']['name']} to {n}",
                      "deployment-controller")


def _deployment_status(cluster: Cluster, cm: ControllerManager, d: dict[str, Any], owned: list[dict[str, Any]],
                       new_rs: dict[str, Any] | None, replicas: int, unavail: int) -> None:
    owned = [cm.fresh("replicasets.apps", rs) or rs for rs in owned]
    new_fresh = cm.fresh("replicasets.apps", new_rs) if new_rs else None
    total = sum(dig(rs, "status", "replicas", default=0) for rs in owned)
    ready = sum(dig(rs, "status", "readyReplicas", default=0) for rs in owned)
    available = sum(_available(rs) for rs in owned)
    updated = dig(new_fresh, "status", "replicas", default=0) if new_fresh else 0
    fresh = cm.fresh("deployments.apps", d)
    if not fresh:
        return
    st = fresh.setdefault("status", {})
    old_st = copy.deepcopy(st)
    st["observedGeneration"] = fresh["metadata"].get("generation", 1)
    st["replicas"] = total
    st["updatedReplicas"] = updated
    st["readyReplicas"] = ready
    st["availableReplicas"] = available
    st["unavailableReplicas"] = max(0, max(total, replicas) - available)
    for k in ("readyReplicas", "availableReplicas", "unavailableReplicas", "replicas", "updatedReplicas"):
        if st[k] == 0:
            st.pop(k)
    now = now_iso()
    if available >= replicas - unavail:
        set_condition(st, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", now)
    else:
        set_condition(st, "Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", now)
    name = dig(new_fresh, "metadata", "name", default="")
    complete = new_fresh is not None and updated == replicas and available == replicas and total == replicas
    if complete:
        set_condition(st, "Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{name}" has successfully progressed.', now)
    else:
        set_condition(st, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{name}" is progressing.', now)
    for c in st["conditions"]:
        c.setdefault("lastUpdateTime", now)
    if st != old_st:
        _keep_times(old_st, st)
        if st != old_st:
            cm.update("deployments.apps", fresh, status=True)


def _keep_times(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Leave lastUpdateTime alone when a condition did not change."""
    olds = {c.get("type"): c for c in old.get("conditions") or []}
    for c in new.get("conditions") or []:
        o = olds.get(c.get("type"))
        if o and all(o.get(k) == c.get(k) for k in ("status", "reason", "message")):
            for k in ("lastUpdateTime", "lastTransitionTime"):
                if k in o:
                    c[k] = o[k]


# ---------------------------------------------------------------------- replicasets
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


def _deletion_cost(p: dict[str, Any]) -> int:
    try:
        return int((p["metadata"].get("annotations") or {}).get(DELETION_COST, 0))
    except (TypeError, ValueError):
        return 0


def _ready_since(p: dict[str, Any]) -> float:
    for c in dig(p, "status", "conditions", default=[]) or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime")) or 0.0
    return 0.0


def _delete_rank(p: dict[str, Any], same_node: int = 0) -> tuple[Any, ...]:
    """Sort key, first deleted first: the real controller's `ActivePodsWithRanks` order
    (pkg/controller/controller_utils.go): unassigned < assigned; Pending < Unknown < Running;
    not ready < ready; lower pod-deletion-cost; more related pods on the same node; ready more
    recently; more container restarts; created more recently (then by name, for a stable order)."""
    ready = pod_ready(p)
    restarts = max((cs.get("restartCount") or 0 for cs in dig(p, "status", "containerStatuses", default=[]) or []),
                   default=0)
    return (
        1 if dig(p, "spec", "nodeName") else 0,
        {"Pending": 0, "Unknown": 1, "Running": 2}.get(dig(p, "status", "phase", default="Pending"), 0),
        1 if ready else 0,
        _deletion_cost(p),
        -same_node,
        -_ready_since(p) if ready else 0.0,
        -restarts,
        -(parse_time(p["metadata"].get("creationTimestamp")) or 0.0),
        p["metadata"].get("name", ""),
    )


def _victims(cm: ControllerManager, rs: dict[str, Any], active: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The `n` pods to delete. Pods "on the same node" count the active pods of every ReplicaSet of the
    same Deployment (the controller's indirectly related pods), so doubled-up nodes give up pods first."""
    owner = next((r.get("uid") for r in rs["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
    related = list(active)
    if owner:
        sibling_uids = {o["metadata"]["uid"] for o in cm.objs("replicasets.apps")
                        if o["metadata"]["uid"] != rs["metadata"]["uid"] and owned_by(o, owner)}
        related += [p for p in cm.objs("pods") if pod_active(p) and any(
            r.get("uid") in sibling_uids and r.get("controller") for r in p["metadata"].get("ownerReferences") or [])]
    on_node: dict[str, int] = {}
    for p in related:
        node = dig(p, "spec", "nodeName")
        if node:
            on_node[node] = on_node.get(node, 0) + 1
    return sorted(active, key=lambda p: _delete_rank(p, on_node.get(dig(p, "spec", "nodeName") or "", 0)))[:n]


def replicasets(cluster: Cluster, cm: ControllerManager) -> None:
    pods = cm.objs("pods")
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for p in pods:
        for r in p["metadata"].get("ownerReferences") or []:
            if r.get("controller") and r.get("kind") == "ReplicaSet":
                by_owner.setdefault(r["uid"], []).append(p)
    for rs in cm.objs("replicasets.apps"):
        if rs["metadata"].get("deletionTimestamp"):
            continue
        mine = by_owner.get(rs["metadata"]["uid"], [])
        active = [p for p in mine if pod_active(p)]
        want = rs["spec"].get("replicas", 1)
        diff = want - len(active)
        if diff > 0:
            for _ in range(min(diff, 500)):
                pod = pod_from_template(rs, rs["spec"]["template"])
                created = cm.create("pods", pod)
                if created:
                    cluster.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                                  "replicaset-controller")
                    active.append(created)
        elif diff < 0:
            victims = _victims(cm, rs, active, -diff)
            for p in victims:
                cm.delete("pods", p["metadata"]["namespace"], p["metadata"]["name"])
                cluster.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                              "replicaset-controller")
            active = [p for p in active if p not in victims]
        ready = sum(1 for p in active if pod_ready(p))
        status = {"replicas": len(active), "fullyLabeledReplicas": len(active), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": rs["metadata"].get("generation", 1)}
        status = {k: v for k, v in status.items() if v or k in ("replicas",)}
        if rs.get("status") != status:
            fresh = cm.fresh("replicasets.apps", rs)
            if fresh:
                fresh["status"] = status
                cm.update("replicasets.apps", fresh, status=True)
