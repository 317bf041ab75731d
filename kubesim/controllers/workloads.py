"""Workload controllers: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
plus namespace lifecycle, garbage collection and endpoints.

Each mirrors the observable behaviour of kube-controller-manager's
counterpart: names, labels, owner references, status fields and conditions.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from ..selectors import selector_from_match
from ..util import dig, int_or_percent, now_iso, set_condition, short_hash
from . import owned_by, pod_active, pod_from_template, pod_ready, template_hash

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
                pod = pod_from_template(ds, tmpl)
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
        rev = f"{name}-{template_hash(sts['spec']['template'])}"
        mine = {p["metadata"]["name"]: p for p in cm.objs("pods", ns) if owned_by(p, sts["metadata"]["uid"])}
        parallel = sts["spec"].get("podManagementPolicy") == "Parallel"
        ready = 0
        for i in range(want):
            pname = f"{name}-{i}"
            p = mine.get(pname)
            if p is None:
                pod = pod_from_template(sts, sts["spec"]["template"], name=pname)
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
                pod = pod_from_template(job, spec["template"], generate=meta["name"] + "-")
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
