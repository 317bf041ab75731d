"""PodDisruptionBudget status (the disruption controller) and the eviction subresource."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .. import errors
from ..selectors import selector_from_match
from ..util import dig, int_or_percent, now_iso, parse_time
from . import pod_ready

if TYPE_CHECKING:
    from ..cluster import Cluster
    from . import ControllerManager

PDB_KEY = "poddisruptionbudgets.policy"
DISRUPTED_TIMEOUT = 120.0  # seconds a disrupted pod stays out of currentHealthy (as upstream)


def _allowed_field(cluster: Cluster) -> str:
    return "disruptionsAllowed" if cluster.minor >= 21 else "podDisruptionsAllowed"


def _expected(cluster: Cluster, pods: list[dict[str, Any]]) -> int:
    """expectedPods: the scale of the controllers owning the selected pods."""
    total = 0
    seen: set[str] = set()
    for p in pods:
        for r in dig(p, "metadata", "ownerReferences", default=[]):
            if not r.get("controller") or r["uid"] in seen:
                continue
            seen.add(r["uid"])
            key = {"ReplicaSet": "replicasets.apps", "StatefulSet": "statefulsets.apps"}.get(r.get("kind"))
            if key:
                owner = cluster.store.get(key, p["metadata"]["namespace"], r["name"])
                total += dig(owner, "spec", "replicas", default=0) if owner else 0
            else:
                total += 1
    return total or len(pods)


def compute(cluster: Cluster, pdb: dict[str, Any], pods: list[dict[str, Any]]) -> dict[str, Any]:
    sel = selector_from_match(dig(pdb, "spec", "selector", default={}) or {})
    if not dig(pdb, "spec", "selector"):
        mine = []
    else:
        mine = [p for p in pods if p["metadata"].get("namespace") == pdb["metadata"]["namespace"]
                and sel(p["metadata"].get("labels") or {}) and not p["metadata"].get("deletionTimestamp")]
    disrupted = dict(dig(pdb, "status", "disruptedPods", default={}) or {})
    now = time.time()
    live = {p["metadata"]["name"] for p in mine}
    for name, at in list(disrupted.items()):
        ts = parse_time(at)
        if name not in live or ts is None or now - ts > DISRUPTED_TIMEOUT:
            del disrupted[name]
    healthy = sum(1 for p in mine if pod_ready(p) and p["metadata"]["name"] not in disrupted)
    spec = pdb.get("spec") or {}
    if "maxUnavailable" in spec:
        expected = _expected(cluster, mine)
        desired = max(0, expected - int_or_percent(spec["maxUnavailable"], expected, True))
    else:
        min_av = spec.get("minAvailable", 1)
        if isinstance(min_av, str) and min_av.endswith("%"):
            expected = _expected(cluster, mine)
            desired = int_or_percent(min_av, expected, True)
        else:
            expected = len(mine)
            desired = int(min_av)
    status: dict[str, Any] = {
        "observedGeneration": pdb["metadata"].get("generation", 1),
        _allowed_field(cluster): max(0, healthy - desired),
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    }
    if disrupted:
        status["disruptedPods"] = disrupted
    if cluster.minor >= 21:
        ok = status[_allowed_field(cluster)] > 0
        old = next((c for c in dig(pdb, "status", "conditions", default=[]) if c.get("type") == "DisruptionAllowed"), None)
        cond = {"type": "DisruptionAllowed", "status": "True" if ok else "False",
                "reason": "SufficientPods" if ok else "InsufficientPods", "message": "",
                "observedGeneration": status["observedGeneration"],
                "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == ("True" if ok else "False") else now_iso()}
        status["conditions"] = [cond]
    return status


def pdb_status(cluster: Cluster, cm: ControllerManager) -> None:
    pdbs = cm.objs(PDB_KEY)
    if not pdbs:
        return
    pods = cm.objs("pods")
    for pdb in pdbs:
        st = compute(cluster, pdb, pods)
        if pdb.get("status") != st:
            fresh = cm.fresh(PDB_KEY, pdb)
            if fresh:
                fresh["status"] = st
                cm.update(PDB_KEY, fresh, status=True)


def evict(cluster: Cluster, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST pods/NAME/eviction: refuse with 429 when a PDB has no disruption left."""
    rt = cluster.rt("pods")
    with cluster.lock:
        pod = cluster.api.get(rt, ns, name)
        opts = dict(body.get("deleteOptions") or {})
        if dig(pod, "status", "phase") in ("Succeeded", "Failed") or dig(pod, "metadata", "deletionTimestamp"):
            cluster.api.delete(rt, ns, name, opts)
            return _success()
        labels = pod["metadata"].get("labels") or {}
        matching = [p for p in cluster.store.objects(PDB_KEY, ns)
                    if dig(p, "spec", "selector") and selector_from_match(p["spec"]["selector"])(labels)]
        if len(matching) > 1:
            raise errors.ApiError(500, "InternalError",
                                  "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")
        if matching:
            pdb = matching[0]
            pods = list(cluster.store.objects("pods", ns))
            st = compute(cluster, pdb, pods)
            field = _allowed_field(cluster)
            if pod_ready(pod) and st[field] <= 0:
                raise errors.too_many_requests(
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                    [{"reason": "DisruptionBudget",
                      "message": f"The disruption budget {pdb['metadata']['name']} needs {st['desiredHealthy']} healthy pods and has {st['currentHealthy']} currently"}],
                )
            if pod_ready(pod):
                st[field] -= 1
                st.setdefault("disruptedPods", {})[name] = now_iso()
            pdb["status"] = st
            cluster.api.update(cluster.rt(PDB_KEY), ns, pdb["metadata"]["name"], pdb, subresource="status")
        cluster.api.delete(rt, ns, name, opts)
        cluster.event(pod, "Normal", "Killing", "Stopping container (evicted)", "kubelet", dig(pod, "spec", "nodeName", default=""))
        return _success()


def _success() -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
