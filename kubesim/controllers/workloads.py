"""Workload controllers: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
plus namespace lifecycle, garbage collection and endpoints.

Each mirrors the observable behaviour of kube-controller-manager's
counterpart: names, labels, owner references, status fields and conditions.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from ..selectors import selector_from_match
from ..util import dig, int_or_percent, now_iso, set_condition, short_hash
from . import controller_ref, owned_by, pod_active, pod_ready

if TYPE_CHECKING:
    from ..cluster import Cluster
    from . import ControllerManager

OWNER_KINDS = {
    "ReplicaSet": "replicasets.apps", "Deployment": "deployments.apps", "DaemonSet": "daemonsets.apps",
    "StatefulSet": "statefulsets.apps", "Job": "jobs.batch", "Node": "nodes",
}
DEPENDENT_KEYS = ("replicasets.apps", "pods", "controllerrevisions.apps", "jobs.batch",
                  "leases.coordination.k8s.io")


# ---------------------------------------------------------------------- namespaces
def namespaces(cluster: Cluster, cm: ControllerManager) -> None:
    """Default ServiceAccount per namespace; empty and remove terminating namespaces."""
    for ns in cm.objs("namespaces"):
        name = ns["metadata"]["name"]
        if ns["metadata"].get("deletionTimestamp"):
            remaining = 0
            for key in list(cluster.store.keys()):
                rt = cluster.types().by_key.get(key)
                if rt is None or not rt.namespaced:
                    continue
                for (ons, oname), _ in cluster.store.entries(key, name):
                    remaining += 1
                    if key == "pods":
                        pod = cluster.store.get("pods", ons, oname)
                        if pod and not dig(pod, "metadata", "deletionTimestamp"):
                            cm.delete(key, ons, oname)
                    else:
                        cm.delete(key, ons, oname, grace=0)
            if remaining == 0:
                fresh = cluster.store.get("namespaces", "", name)
                if fresh is not None:
                    fresh.setdefault("spec", {})["finalizers"] = []
                    rt = cluster.rt("namespaces")
                    cluster.api.update(rt, "", name, fresh, subresource="finalize")
            continue
        if cluster.store.entry("serviceaccounts", name, "default") is None:
            cm.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": "default", "namespace": name}})


# ---------------------------------------------------------------------- garbage collector
def garbage_collect(cluster: Cluster, cm: ControllerManager) -> None:
    """Delete dependents whose owners are gone (background propagation) and finish
    foreground deletions once their dependents are gone."""
    uids: set[str] = set()
    deleting_fg: dict[str, tuple[str, dict[str, Any]]] = {}
    for _kind, key in OWNER_KINDS.items():
        for o in cm.objs(key):
            uid = o["metadata"]["uid"]
            uids.add(uid)
            if o["metadata"].get("deletionTimestamp") and "foregroundDeletion" in (o["metadata"].get("finalizers") or []):
                deleting_fg[uid] = (key, o)
    has_dependents: set[str] = set()
    for key in DEPENDENT_KEYS:
        for o in cm.objs(key):
            refs = o["metadata"].get("ownerReferences") or []
            if not refs:
                continue
            meta = o["metadata"]
            owner_uids = [r.get("uid") for r in refs if r.get("kind") in OWNER_KINDS]
            if not owner_uids:
                continue
            for u in owner_uids:
                if u in deleting_fg:
                    has_dependents.add(u)
                    if not meta.get("deletionTimestamp"):
                        cm.delete(key, meta.get("namespace", ""), meta["name"], policy="Foreground")
            if all(u not in uids for u in owner_uids) and not meta.get("deletionTimestamp"):
                cm.delete(key, meta.get("namespace", ""), meta["name"], policy="Background")
    for uid, (key, o) in deleting_fg.items():
        if uid not in has_dependents:
            fresh = cm.fresh(key, o)
            if fresh:
                fresh["metadata"]["finalizers"] = [f for f in fresh["metadata"].get("finalizers") or []
                                                   if f != "foregroundDeletion"]
                cm.update(key, fresh)


# ---------------------------------------------------------------------- deployments
def _template_hash(template: dict[str, Any]) -> str:
    return short_hash(json.dumps(template, sort_keys=True), 10)


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
    h = _template_hash(template)
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
    else:
        if dig(new_rs, "metadata", "annotations", "deployment.kubernetes.io/revision") != str(revision) and old:
            pass
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
def _pod_from_template(owner: dict[str, Any], template: dict[str, Any], name: str | None = None,
                       generate: str | None = None) -> dict[str, Any]:
    t = copy.deepcopy(template)
    meta = t.get("metadata") or {}
    pod_meta: dict[str, Any] = {"namespace": owner["metadata"]["namespace"], "ownerReferences": [controller_ref(owner)]}
    if name:
        pod_meta["name"] = name
    else:
        pod_meta["generateName"] = generate or owner["metadata"]["name"] + "-"
    if meta.get("labels"):
        pod_meta["labels"] = dict(meta["labels"])
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": t.get("spec") or {}}


def _delete_rank(p: dict[str, Any]) -> tuple[int, int, int, str]:
    return (
        1 if dig(p, "spec", "nodeName") else 0,
        {"Pending": 0, "Unknown": 1, "Running": 2}.get(dig(p, "status", "phase", default="Pending"), 0),
        1 if pod_ready(p) else 0,
        "~" + str(-len(p["metadata"].get("creationTimestamp", ""))),
    )


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
                pod = _pod_from_template(rs, rs["spec"]["template"])
                created = cm.create("pods", pod)
                if created:
                    cluster.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                                  "replicaset-controller")
                    active.append(created)
        elif diff < 0:
            victims = sorted(active, key=_delete_rank)[:-diff]
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


# ---------------------------------------------------------------------- daemonsets
def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if not t.get("key") and op == "Exists":
            return True
        if t.get("key") != taint.get("key"):
            continue
        if op == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


DS_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def node_matches(node: dict[str, Any], spec: dict[str, Any]) -> bool:
    """nodeSelector and required node affinity."""
    labels = node["metadata"].get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    terms = dig(spec, "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                "nodeSelectorTerms", default=None)
    if terms:
        return any(_term_matches(node, t) for t in terms)
    return True


def _term_matches(node: dict[str, Any], term: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    for e in term.get("matchExpressions") or []:
        if not _expr(labels.get(e.get("key")), e.get("key") in labels, e):
            return False
    for e in term.get("matchFields") or []:
        if e.get("key") == "metadata.name" and not _expr(node["metadata"]["name"], True, e):
            return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def _expr(value: str | None, present: bool, e: dict[str, Any]) -> bool:
    op, vals = e.get("operator"), e.get("values") or []
    if op == "In":
        return present and value in vals
    if op == "NotIn":
        return not present or value not in vals
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and vals:
        try:
            return int(value or 0) > int(vals[0]) if op == "Gt" else int(value or 0) < int(vals[0])
        except ValueError:
            return False
    return False


def daemonsets(cluster: Cluster, cm: ControllerManager) -> None:
    nodes = cm.objs("nodes")
    pods = cm.objs("pods")
    by_owner: dict[str, list[dict[str, Any]]] = {}
    for p in pods:
        for r in p["metadata"].get("ownerReferences") or []:
            if r.get("controller") and r.get("kind") == "DaemonSet":
                by_owner.setdefault(r["uid"], []).append(p)
    for ds in cm.objs("daemonsets.apps"):
        if ds["metadata"].get("deletionTimestamp"):
            continue
        gen = str(ds["metadata"].get("generation", 1))
        tmpl = ds["spec"]["template"]
        tspec = tmpl.get("spec") or {}
        tols = list(tspec.get("tolerations") or []) + DS_TOLERATIONS
        mine = [p for p in by_owner.get(ds["metadata"]["uid"], []) if not p["metadata"].get("deletionTimestamp")]
        on_node: dict[str, list[dict[str, Any]]] = {}
        for p in mine:
            target = dig(p, "spec", "nodeName") or _affinity_node(p)
            on_node.setdefault(target or "", []).append(p)
        desired = current = ready = updated = misscheduled = 0
        max_unavail = int_or_percent(dig(ds, "spec", "updateStrategy", "rollingUpdate", "maxUnavailable", default=1),
                                     len(nodes), True) or 1
        unavailable_now = 0
        to_roll: list[dict[str, Any]] = []
        for n in nodes:
            nname = n["metadata"]["name"]
            eligible = node_matches(n, tspec) and all(
                tolerates(tols, t) for t in dig(n, "spec", "taints", default=[]) if t.get("effect") in ("NoSchedule", "NoExecute"))
            have = on_node.pop(nname, [])
            if not eligible:
                misscheduled += len([p for p in have if dig(p, "spec", "nodeName")])
                for p in have:
                    cm.delete("pods", p["metadata"]["namespace"], p["metadata"]["name"])
                continue
            desired += 1
            if not have:
                pod = _pod_from_template(ds, tmpl)
                pod["metadata"].setdefault("labels", {}).update({"controller-revision-hash": short_hash(gen), "pod-template-generation": gen})
                pspec = pod["spec"]
                pspec["tolerations"] = list(pspec.get("tolerations") or []) + [
                    t for t in DS_TOLERATIONS if not any(x.get("key") == t["key"] for x in pspec.get("tolerations") or [])]
                pspec.setdefault("affinity", {})["nodeAffinity"] = {
                    "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [nname]}]}]}}
                created = cm.create("pods", pod)
                if created:
                    cluster.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                                  "daemonset-controller")
                unavailable_now += 1
                continue
            for extra in have[1:]:
                cm.delete("pods", extra["metadata"]["namespace"], extra["metadata"]["name"])
            p = have[0]
            if dig(p, "spec", "nodeName"):
                current += 1
            if pod_ready(p):
                ready += 1
            else:
                unavailable_now += 1
            if dig(p, "metadata", "labels", "pod-template-generation") == gen:
                updated += 1
            else:
                to_roll.append(p)
        for leftover in on_node.values():
            for p in leftover:
                cm.delete("pods", p["metadata"]["namespace"], p["metadata"]["name"])
        if dig(ds, "spec", "updateStrategy", "type", default="RollingUpdate") == "RollingUpdate":
            budget = max(0, max_unavail - unavailable_now)
            for p in sorted(to_roll, key=lambda x: (pod_ready(x), x["metadata"]["name"]))[:budget]:
                cm.delete("pods", p["metadata"]["namespace"], p["metadata"]["name"])
        status = {
            "currentNumberScheduled": current, "numberMisscheduled": misscheduled,
            "desiredNumberScheduled": desired, "numberReady": ready,
            "observedGeneration": ds["metadata"].get("generation", 1), "updatedNumberScheduled": updated,
            "numberAvailable": ready, "numberUnavailable": max(0, desired - ready),
        }
        status = {k: v for k, v in status.items() if v or k in ("currentNumberScheduled", "numberMisscheduled",
                                                               "desiredNumberScheduled", "numberReady")}
        if ds.get("status") != status:
            fresh = cm.fresh("daemonsets.apps", ds)
            if fresh:
                fresh["status"] = status
                cm.update("daemonsets.apps", fresh, status=True)


def _affinity_node(p: dict[str, Any]) -> str | None:
    for t in dig(p, "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
                 "nodeSelectorTerms", default=[]) or []:
        for f in t.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("values"):
                return f["values"][0]
    return None


# ---------------------------------------------------------------------- statefulsets
def statefulsets(cluster: Cluster, cm: ControllerManager) -> None:
    for sts in cm.objs("statefulsets.apps"):
        if sts["metadata"].get("deletionTimestamp"):
            continue
        ns, name = sts["metadata"]["namespace"], sts["metadata"]["name"]
        want = sts["spec"].get("replicas", 1)
        rev = f"{name}-{_template_hash(sts['spec']['template'])}"
        mine = {p["metadata"]["name"]: p for p in cm.objs("pods", ns) if owned_by(p, sts["metadata"]["uid"])}
        parallel = sts["spec"].get("podManagementPolicy") == "Parallel"
        ready = 0
        for i in range(want):
            pname = f"{name}-{i}"
            p = mine.get(pname)
            if p is None:
                pod = _pod_from_template(sts, sts["spec"]["template"], name=pname)
                pod["metadata"].setdefault("labels", {}).update(
                    {"controller-revision-hash": rev, "statefulset.kubernetes.io/pod-name": pname})
                pod["spec"]["hostname"] = pname
                if sts["spec"].get("serviceName"):
                    pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
                if cm.create("pods", pod):
                    cluster.event(sts, "Normal", "SuccessfulCreate", f"create Pod {pname} in StatefulSet {name} successful",
                                  "statefulset-controller")
                if not parallel:
                    break
                continue
            if not pod_active(p):
                continue
            if pod_ready(p):
                ready += 1
            elif not parallel:
                break
        for pname, p in mine.items():
            idx = pname.rsplit("-", 1)[-1]
            if idx.isdigit() and int(idx) >= want and not p["metadata"].get("deletionTimestamp"):
                cm.delete("pods", ns, pname)
        current = sum(1 for p in mine.values() if pod_active(p))
        status = {"observedGeneration": sts["metadata"].get("generation", 1), "replicas": current,
                  "readyReplicas": ready, "currentReplicas": current, "updatedReplicas": current,
                  "currentRevision": rev, "updateRevision": rev, "collisionCount": 0}
        status = {k: v for k, v in status.items() if v or k in ("replicas", "collisionCount")}
        if sts.get("status") != status:
            fresh = cm.fresh("statefulsets.apps", sts)
            if fresh:
                fresh["status"] = status
                cm.update("statefulsets.apps", fresh, status=True)


# ---------------------------------------------------------------------- jobs
def jobs(cluster: Cluster, cm: ControllerManager) -> None:
    for job in cm.objs("jobs.batch"):
        meta = job["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        uid = meta["uid"]
        spec = job["spec"]
        fresh = None
        if "controller-uid" not in (dig(spec, "selector", "matchLabels", default={}) or {}):
            fresh = cm.fresh("jobs.batch", job)
            if fresh is None:
                continue
            fresh["spec"]["selector"] = {"matchLabels": {"controller-uid": uid}}
            labels = fresh["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
            labels.update({"controller-uid": uid, "job-name": meta["name"]})
            job = cm.update("jobs.batch", fresh) or job
            spec = job["spec"]
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in dig(job, "status", "conditions", default=[])):
            continue
        pods = [p for p in cm.objs("pods", meta["namespace"]) if owned_by(p, uid)]
        succeeded = sum(1 for p in pods if dig(p, "status", "phase") == "Succeeded")
        failed = sum(1 for p in pods if dig(p, "status", "phase") == "Failed")
        active = [p for p in pods if pod_active(p)]
        completions = spec.get("completions", 1)
        parallel = spec.get("parallelism", 1)
        st = copy.deepcopy(job.get("status") or {})
        now = now_iso()
        st.setdefault("startTime", now)
        if succeeded >= completions:
            st["completionTime"] = now
            set_condition(st, "Complete", "True", now=now, probe=True)
            st["conditions"][-1]["lastProbeTime"] = now
            cluster.event(job, "Normal", "Completed", "Job completed", "job-controller")
        elif failed > spec.get("backoffLimit", 6):
            set_condition(st, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now, probe=True)
        else:
            want = min(parallel, completions - succeeded) - len(active)
            for _ in range(max(0, want)):
                pod = _pod_from_template(job, spec["template"], generate=meta["name"] + "-")
                created = cm.create("pods", pod)
                if created:
                    active.append(created)
                    cluster.event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}",
                                  "job-controller")
        st["active"] = len([p for p in active if pod_active(p)]) if succeeded < completions else 0
        st["succeeded"] = succeeded
        st["failed"] = failed
        st = {k: v for k, v in st.items() if v or k == "startTime"}
        if st != (job.get("status") or {}):
            fresh = cm.fresh("jobs.batch", job)
            if fresh:
                fresh["status"] = st
                cm.update("jobs.batch", fresh, status=True)


# ---------------------------------------------------------------------- endpoints
def endpoints(cluster: Cluster, cm: ControllerManager) -> None:
    for svc in cm.objs("services"):
        sel = dig(svc, "spec", "selector")
        if not sel:
            continue
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        test = selector_from_match({"matchLabels": sel})
        ready, not_ready = [], []
        for p in cm.objs("pods", ns):
            if not test(p["metadata"].get("labels") or {}) or not dig(p, "status", "podIP") or p["metadata"].get("deletionTimestamp"):
                continue
            addr = {"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName"),
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                  "uid": p["metadata"]["uid"]}}
            (ready if pod_ready(p) else not_ready).append(addr)
        ports = [{k: v for k, v in (("name", pt.get("name")), ("port", pt.get("targetPort") if isinstance(pt.get("targetPort"), int) else pt.get("port")),
                                    ("protocol", pt.get("protocol", "TCP"))) if v is not None}
                 for pt in dig(svc, "spec", "ports", default=[])]
        subsets = []
        if ready or not_ready:
            sub: dict[str, Any] = {"ports": ports}
            if ready:
                sub["addresses"] = sorted(ready, key=lambda a: a["ip"])
            if not_ready:
                sub["notReadyAddresses"] = sorted(not_ready, key=lambda a: a["ip"])
            subsets.append(sub)
        cur = cluster.store.get("endpoints", ns, name)
        if cur is None:
            cm.create("endpoints", {"apiVersion": "v1", "kind": "Endpoints",
                                    "metadata": {"name": name, "namespace": ns, "labels": svc["metadata"].get("labels") or {}},
                                    "subsets": subsets})
        elif (cur.get("subsets") or []) != subsets:
            cur["subsets"] = subsets
            cm.update("endpoints", cur)
