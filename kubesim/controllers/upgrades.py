"""Node upgrades: the Corral node agent (rke) and system-upgrade-controller (k3s).

Node agent protocol (a DaemonSet `kube-system/corral-node-agent` runs it on every
node; without its pod on a node, nothing happens there):

* the portal sets annotation `nodeagent.corral.io/desired-version` on a Node;
* the agent answers in annotations `nodeagent.corral.io/state`
  (`Upgrading` -> `Upgraded` | `Failed`), `.../observed-version` (the desired
  version it acted on), `.../message` and `.../updated-at`;
* while upgrading, the node reports Ready=False (kubelet restarting) for
  `upgrade_down` seconds and stops renewing its lease, then comes back Ready with
  `status.nodeInfo.kubeletVersion` = the desired version;
* a `Failed` node is retried when desired-version changes or the portal deletes
  the state annotation.

system-upgrade-controller follows rancher/system-upgrade-controller: Plans in
`upgrade.cattle.io/v1`, `status.latestVersion` from `spec.version`,
`status.latestHash` = sha224(latestVersion + serviceAccountName), nodes chosen
by `nodeSelector` and the `plan.upgrade.cattle.io/<plan>` label, at most
`concurrency` at a time (listed in `status.applying`), one Job per node named
`apply-<plan>-on-<node>-with-<hash>` whose init containers prepare, cordon or
drain, and whose upgrade container replaces k3s.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

from .. import errors
from ..selectors import selector_from_match
from ..util import dig, now_iso, set_condition
from . import controller_ref, pod_active

if TYPE_CHECKING:
    from ..cluster import Cluster, NodeRuntime
    from . import ControllerManager

AGENT = "nodeagent.corral.io/"
DESIRED = AGENT + "desired-version"
STATE = AGENT + "state"
OBSERVED = AGENT + "observed-version"
MESSAGE = AGENT + "message"
UPDATED = AGENT + "updated-at"
KUBELET_ARGS = AGENT + "kubelet-args"
APPLIED_ARGS = AGENT + "applied-kubelet-args"
AGENT_DS = ("kube-system", "corral-node-agent")
PLAN_KEY = "plans.upgrade.cattle.io"
SUC_NS = "system-upgrade"
SUC_NAME = "system-upgrade-controller"
LABEL_CONTROLLER = "upgrade.cattle.io/controller"


# ---------------------------------------------------------------------- shared: replace a node's Kubernetes
def begin_upgrade(cluster: Cluster, rt: NodeRuntime, version: str, on_done: Any) -> None:
    """Stop the kubelet, report NotReady, and after `upgrade_down` come back on `version`
    (or never, if the control API made this node fail its upgrade)."""
    kubelets = cluster.controllers.kubelets
    kubelets.report_status(rt, ready=False, message=f"kubelet is restarting: upgrading Kubernetes to {version}")
    rt.upgrading = True
    rt.failed = False
    cluster.log("node-upgrade", f"node {rt.name}: upgrading {rt.version} -> {version}", node=rt.name)

    def finish() -> None:
        if not rt.upgrading:
            return
        if rt.fail_upgrade:
            rt.upgrading = False
            rt.failed = True  # the new kubelet never starts: no status, no lease
            cluster.log("node-upgrade", f"node {rt.name}: upgrade to {version} failed", node=rt.name)
            on_done(False)
            return
        rt.upgrading = False
        rt.version = version
        kubelets.renew(rt)
        kubelets.report_status(rt, ready=True)
        cluster.refresh_version()
        cluster.log("node-upgrade", f"node {rt.name}: now {version}", node=rt.name)
        on_done(True)
        cluster.kick()

    cluster.later(cluster.timings.upgrade_down, finish)


# ---------------------------------------------------------------------- node agent (rke)
def _agent_running(cluster: Cluster, cm: ControllerManager, node: str) -> bool:
    ds = cluster.store.get("daemonsets.apps", *AGENT_DS)
    if ds is None:
        return False
    uid = ds["metadata"]["uid"]
    for p in cm.objs("pods", AGENT_DS[0]):
        if dig(p, "spec", "nodeName") == node and dig(p, "status", "phase") == "Running" and any(
                r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or []):
            return True
    return False


def _annotate(cluster: Cluster, node: str, **values: str) -> None:
    obj = cluster.store.get("nodes", "", node)
    if obj is None:
        return
    ann = obj["metadata"].setdefault("annotations", {})
    names = {"state": STATE, "observed": OBSERVED, "message": MESSAGE, "applied_args": APPLIED_ARGS}
    for k, v in values.items():
        ann[names[k]] = v
    ann[UPDATED] = now_iso()
    cluster.api.update(cluster.rt("nodes"), "", node, obj, check_rv=False)


def _kubelet_args(cluster: Cluster, cm: ControllerManager, node: dict[str, Any], rt: NodeRuntime) -> None:
    """Restart the kubelet with the flags the portal asked for (e.g. max-pods)."""
    ann = node["metadata"].get("annotations") or {}
    raw = ann.get(KUBELET_ARGS)
    if raw is None or not rt.kubelet_running:
        return
    name = node["metadata"]["name"]
    try:
        args = json.loads(raw)
        if not isinstance(args, dict):
            raise ValueError("not an object")
        args = {str(k): str(v) for k, v in args.items()}
    except ValueError as e:
        if not ann.get(MESSAGE, "").startswith("invalid kubelet-args"):
            _annotate(cluster, name, message=f"invalid kubelet-args: {e}")
        return
    if args == rt.kubelet_args and ann.get(APPLIED_ARGS) == json.dumps(args, sort_keys=True):
        return
    if not _agent_running(cluster, cm, name):
        return
    rt.kubelet_args = args
    cluster.controllers.kubelets.report_status(rt)
    _annotate(cluster, name, applied_args=json.dumps(args, sort_keys=True), message="kubelet restarted with new arguments")
    cluster.event(node, "Normal", "KubeletRestarted", f"kubelet restarted with {json.dumps(args, sort_keys=True)}",
                  "corral-node-agent", name)


def node_agent(cluster: Cluster, cm: ControllerManager) -> None:
    if cluster.kind != "rke":
        return
    for node in cm.objs("nodes"):
        ann = node["metadata"].get("annotations") or {}
        rt_args = cluster.nodes.get(node["metadata"]["name"])
        if rt_args is not None and KUBELET_ARGS in ann:
            _kubelet_args(cluster, cm, node, rt_args)
        desired = ann.get(DESIRED)
        if not desired:
            continue
        name = node["metadata"]["name"]
        rt = cluster.nodes.get(name)
        if rt is None or not rt.up or (rt.upgrading and not rt.failed):
            continue
        state = ann.get(STATE, "")
        if desired == rt.version and not rt.failed:
            if state != "Upgraded" or ann.get(OBSERVED) != desired:
                _annotate(cluster, name, state="Upgraded", observed=desired, message=f"running {desired}")
            continue
        if state == "Failed" and ann.get(OBSERVED) == desired:
            continue
        if not _agent_running(cluster, cm, name):
            continue
        old = rt.version

        def done(ok: bool, name: str = name, desired: str = desired, old: str = old) -> None:
            if ok:
                _annotate(cluster, name, state="Upgraded", observed=desired, message=f"upgraded from {old} to {desired}")
            else:
                _annotate(cluster, name, state="Failed", observed=desired,
                          message=f"upgrade to {desired} failed: kubelet did not become ready")
                node_obj = cluster.store.get("nodes", "", name)
                if node_obj:
                    cluster.event(node_obj, "Warning", "UpgradeFailed", f"upgrade to {desired} failed", "corral-node-agent", name)

        _annotate(cluster, name, state="Upgrading", observed=desired, message=f"upgrading from {old} to {desired}")
        cluster.event(node, "Normal", "Upgrading", f"upgrading Kubernetes from {old} to {desired}", "corral-node-agent", name)
        begin_upgrade(cluster, rt, desired, done)


# ---------------------------------------------------------------------- system-upgrade-controller (k3s)
def latest_hash(version: str, service_account: str) -> str:
    h = hashlib.sha224()
    h.update(version.encode())
    h.update(service_account.encode())
    return h.hexdigest()


def safe_concat_name(*parts: str) -> str:
    """wrangler's name.SafeConcatName: join with '-', cap at 63 chars with a hash suffix."""
    full = "-".join(parts)
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:5]
    return full[:57].rstrip("-.") + "-" + digest


def _plan_label(plan: str) -> str:
    return f"plan.upgrade.cattle.io/{plan}"


class SucState:
    """What the upgrade Job pods are doing (their containers' progress)."""

    def __init__(self) -> None:
        self.stage: dict[str, str] = {}  # job name -> prepare|cordon|drain|upgrade|upgrading|done
        self.since: dict[str, float] = {}
        self.next_try: dict[str, float] = {}


def _suc(cluster: Cluster) -> SucState:
    st = getattr(cluster, "_suc_state", None)
    if st is None:
        st = SucState()
        cluster._suc_state = st  # type: ignore[attr-defined]
    return st


def _plan_candidates(plan: dict[str, Any], nodes: list[dict[str, Any]], h: str) -> list[dict[str, Any]]:
    sel = selector_from_match(dig(plan, "spec", "nodeSelector", default={}) or {})
    label = _plan_label(plan["metadata"]["name"])
    out = []
    for n in nodes:
        labels = n["metadata"].get("labels") or {}
        if "kubernetes.io/hostname" not in labels or not sel(labels):
            continue
        if labels.get(label) in ("disabled", h):
            continue
        out.append(n)
    return out


def system_upgrade_controller(cluster: Cluster, cm: ControllerManager) -> None:
    plans = cm.objs(PLAN_KEY)
    if not plans or cluster.store.entry("deployments.apps", SUC_NS, SUC_NAME) is None:
        return
    nodes = cm.objs("nodes")
    for plan in plans:
        if plan["metadata"].get("deletionTimestamp"):
            continue
        _sync_plan(cluster, cm, plan, nodes)


def _sync_plan(cluster: Cluster, cm: ControllerManager, plan: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
    spec = plan.get("spec") or {}
    meta = plan["metadata"]
    status = dict(plan.get("status") or {})
    status["conditions"] = [dict(c) for c in status.get("conditions") or []]
    now = now_iso()
    version = spec.get("version") or ""
    drain = spec.get("drain")
    if not version:
        msg = "channel resolution is not available in kubesim; set spec.version" if spec.get("channel") else \
            "spec.version or spec.channel is required"
        set_condition(status, "LatestResolved", "False", "Error", msg, now)
        _write_status(cm, plan, status)
        return
    if drain and "deleteEmptydirData" in drain and "deleteLocalData" in drain:
        set_condition(status, "Validated", "False", "Error",
                      "spec.drain cannot specify both deleteEmptydirData and deleteLocalData", now)
        _write_status(cm, plan, status)
        return
    if not dig(spec, "upgrade", "image"):
        set_condition(status, "Validated", "False", "Error", "spec.upgrade.image is required", now)
        _write_status(cm, plan, status)
        return
    set_condition(status, "Validated", "True", "PlanIsValid", "", now)
    set_condition(status, "LatestResolved", "True", "Version", "", now)
    h = latest_hash(version, spec.get("serviceAccountName", ""))
    status["latestVersion"] = version
    status["latestHash"] = h
    candidates = _plan_candidates(plan, nodes, h)
    cand_names = {n["metadata"]["name"] for n in candidates}
    applying = [n for n in status.get("applying") or [] if n in cand_names]
    concurrency = int(spec.get("concurrency") or 1)
    if len(applying) < concurrency:
        ranked = sorted((n for n in candidates if n["metadata"]["name"] not in applying),
                        key=lambda n: hashlib.sha256((n["metadata"]["uid"] + meta["uid"] + h).encode()).hexdigest())
        for n in ranked[: concurrency - len(applying)]:
            applying.append(n["metadata"]["name"])
    applying.sort()
    if applying:
        status["applying"] = applying
    else:
        status.pop("applying", None)
    for node in applying:
        _drive_job(cluster, cm, plan, node, version, h)
    if not candidates:
        set_condition(status, "Complete", "True", "", "", now)
    else:
        set_condition(status, "Complete", "False", "", "", now)
    _write_status(cm, plan, status)


def _write_status(cm: ControllerManager, plan: dict[str, Any], status: dict[str, Any]) -> None:
    old = plan.get("status") or {}
    olds = {c.get("type"): c for c in old.get("conditions") or []}
    for c in status.get("conditions") or []:
        o = olds.get(c.get("type"))
        if o and o.get("status") == c.get("status"):
            c["lastTransitionTime"] = o.get("lastTransitionTime", c.get("lastTransitionTime"))
            if "lastUpdateTime" in o:
                c["lastUpdateTime"] = o["lastUpdateTime"]
    for c in status.get("conditions") or []:
        c.setdefault("lastUpdateTime", c.get("lastTransitionTime"))
    if status != old:
        fresh = cm.fresh(PLAN_KEY, plan)
        if fresh:
            fresh["status"] = status
            cm.update(PLAN_KEY, fresh, status=True)


def _image(spec: dict[str, Any] | None, version: str) -> str:
    image = (spec or {}).get("image", "")
    if ":" not in image.rsplit("/", 1)[-1]:
        image += ":" + version.replace("+", "-")
    return image


def _job_for(plan: dict[str, Any], node: str, version: str, h: str) -> dict[str, Any]:
    spec = plan.get("spec") or {}
    pname = plan["metadata"]["name"]
    labels = {LABEL_CONTROLLER: SUC_NAME, "upgrade.cattle.io/node": node, "upgrade.cattle.io/plan": pname,
              "upgrade.cattle.io/version": version.replace("+", "-"), _plan_label(pname): h}
    init: list[dict[str, Any]] = []
    if spec.get("prepare"):
        init.append({"name": "prepare", "image": _image(spec["prepare"], version),
                     "args": list(spec["prepare"].get("args") or [])})
    drain = spec.get("drain")
    if drain is not None:
        args = ["drain", node, "--pod-selector", "!" + LABEL_CONTROLLER]
        if drain.get("ignoreDaemonSets", True):
            args.append("--ignore-daemonsets")
        if drain.get("deleteLocalData", drain.get("deleteEmptydirData", True)):
            args.append("--delete-local-data")
        if drain.get("force"):
            args.append("--force")
        if drain.get("timeout") is not None:
            args += ["--timeout", str(drain["timeout"])]
        if drain.get("gracePeriod") is not None:
            args += ["--grace-period", str(drain["gracePeriod"])]
        init.append({"name": "drain", "image": "rancher/kubectl:v1.18.3", "args": args})
    elif spec.get("cordon"):
        init.append({"name": "cordon", "image": "rancher/kubectl:v1.18.3", "args": ["cordon", node]})
    pod_spec: dict[str, Any] = {
        "hostIPC": True, "hostPID": True, "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",
        "serviceAccountName": spec.get("serviceAccountName", "default"),
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
        "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
                        *(spec.get("tolerations") or [])],
        "restartPolicy": "Never",
        "containers": [{"name": "upgrade", "image": _image(spec.get("upgrade"), version),
                        "args": list(dig(spec, "upgrade", "args", default=[]) or []),
                        "securityContext": {"privileged": True, "capabilities": {"add": ["CAP_SYS_BOOT"]}}}],
    }
    if init:
        pod_spec["initContainers"] = init
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": safe_concat_name("apply", pname, "on", node, "with", h),
                     "namespace": plan["metadata"]["namespace"], "labels": labels,
                     "annotations": {"upgrade.cattle.io/ttl-seconds-after-finished": "900"},
                     "ownerReferences": [dict(controller_ref(plan), blockOwnerDeletion=False)]},
        "spec": {"backoffLimit": 99, "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec}},
    }


def _drive_job(cluster: Cluster, cm: ControllerManager, plan: dict[str, Any], node: str, version: str, h: str) -> None:
    ns = plan["metadata"]["namespace"]
    job_obj = _job_for(plan, node, version, h)
    jname = job_obj["metadata"]["name"]
    job = cluster.store.get("jobs.batch", ns, jname)
    st = _suc(cluster)
    if job is None:
        job = cm.create("jobs.batch", job_obj)
        if job is None:
            return
        st.stage.pop(jname, None)  # a new Job runs its pod from the first init container
        st.since.pop(jname, None)
        cluster.log("suc", f"plan {plan['metadata']['name']}: job {jname} for node {node}", node=node)
    uid = job["metadata"]["uid"]
    pods = [p for p in cm.objs("pods", ns) if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]
    pod = next((p for p in pods if pod_active(p) and dig(p, "status", "hostIP")), None)
    if any(dig(p, "status", "phase") == "Succeeded" for p in pods):
        _complete(cluster, plan, node, h)
        return
    if pod is None:
        return
    spec = plan.get("spec") or {}
    stage = st.stage.get(jname, "prepare")
    now_m = time.monotonic()
    if st.next_try.get(jname, 0) > now_m:
        cluster.wake_in(st.next_try[jname] - now_m + 0.01)
        return
    rt = cluster.nodes.get(node)
    if stage == "prepare":
        args = dig(spec, "prepare", "args", default=[]) or []
        if len(args) >= 2 and args[0] == "prepare":
            other = cluster.store.get(PLAN_KEY, ns, args[1])
            if other is None or not _plan_done(other, cm):
                _retry_soon(cluster, st, jname)
                return
        stage = "cordon"
    if stage == "cordon":
        if spec.get("drain") is not None or spec.get("cordon"):
            _set_unschedulable(cluster, node, True)
        stage = "drain" if spec.get("drain") is not None else "upgrade"
        st.since[jname] = now_m
    if stage == "drain":
        ok = _drain_step(cluster, cm, node, spec["drain"] or {}, jname, st)
        if not ok:
            st.stage[jname] = "drain"
            _retry_soon(cluster, st, jname)
            return
        stage = "upgrade"
    if stage == "upgrade":
        if rt is None or not rt.up:
            st.stage[jname] = stage
            return
        _pod_running(cluster, pod)
        st.stage[jname] = "upgrading"
        pod_ref = (ns, pod["metadata"]["name"])

        def done(ok: bool) -> None:
            if ok:
                cluster.controllers.kubelets._finish(*pod_ref)
                st.stage[jname] = "done"
            else:  # the upgrade container failed: the Job runs it again (backoffLimit)
                st.stage[jname] = "upgrade"
                _retry_soon(cluster, st, jname)

        if rt.version == version:
            st.stage[jname] = "done"
            cluster.controllers.kubelets._finish(*pod_ref)
        else:
            begin_upgrade(cluster, rt, version, done)
        return
    st.stage[jname] = stage


def _retry_soon(cluster: Cluster, st: SucState, jname: str) -> None:
    delay = max(0.05, min(2.0, cluster.timings.heartbeat / 4))
    st.next_try[jname] = time.monotonic() + delay
    cluster.wake_in(delay + 0.01)


def _plan_done(plan: dict[str, Any], cm: ControllerManager) -> bool:
    h = dig(plan, "status", "latestHash")
    if not h:
        return False
    return not _plan_candidates(plan, cm.objs("nodes"), h)


def _pod_running(cluster: Cluster, pod: dict[str, Any]) -> None:
    fresh = cluster.store.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
    if fresh is None or dig(fresh, "status", "phase") == "Running":
        return
    now = now_iso()
    st = fresh["status"]
    st["phase"] = "Running"
    for ics in st.get("initContainerStatuses") or []:
        ics["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
    for cs in st.get("containerStatuses") or []:
        cs["state"] = {"running": {"startedAt": now}}
        cs["ready"] = True
        cs["started"] = True
    set_condition(st, "Initialized", "True", now=now, probe=True)
    set_condition(st, "ContainersReady", "True", now=now, probe=True)
    set_condition(st, "Ready", "True", now=now, probe=True)
    cluster.api.update(cluster.rt("pods"), fresh["metadata"]["namespace"], fresh["metadata"]["name"], fresh,
                       subresource="status", check_rv=False)


def _set_unschedulable(cluster: Cluster, node: str, value: bool) -> None:
    obj = cluster.store.get("nodes", "", node)
    if obj is None or bool(dig(obj, "spec", "unschedulable")) == value:
        return
    if value:
        obj["spec"]["unschedulable"] = True
    else:
        obj["spec"].pop("unschedulable", None)
    cluster.api.update(cluster.rt("nodes"), "", node, obj, check_rv=False)


def _drain_step(cluster: Cluster, cm: ControllerManager, node: str, drain: dict[str, Any], jname: str,
                st: SucState) -> bool:
    """One round of `kubectl drain`: evict what may go; True once the node is empty."""
    timeout = drain.get("timeout")
    limit = _duration(timeout) * cluster.time_scale if timeout is not None else cluster.timings.drain_timeout
    ignore_ds = drain.get("ignoreDaemonSets", True)
    force = bool(drain.get("force"))
    delete_local = drain.get("deleteLocalData", drain.get("deleteEmptydirData", True))
    grace = drain.get("gracePeriod")
    remaining = 0
    for p in cm.objs("pods"):
        if dig(p, "spec", "nodeName") != node or dig(p, "status", "phase") in ("Succeeded", "Failed"):
            continue
        labels = p["metadata"].get("labels") or {}
        if LABEL_CONTROLLER in labels:
            continue
        owners = [r for r in p["metadata"].get("ownerReferences") or [] if r.get("controller")]
        if any(r.get("kind") == "DaemonSet" for r in owners):
            if ignore_ds:
                continue
            cluster.log("suc", f"drain {node}: cannot delete DaemonSet-managed Pods (use --ignore-daemonsets)", node=node)
            return False
        if (p["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror"):
            continue
        if not owners and not force:
            cluster.log("suc", f"drain {node}: cannot delete Pods not managed by ReplicationController, ReplicaSet, "
                               f"Job, DaemonSet or StatefulSet (use --force to override): {p['metadata']['name']}", node=node)
            return False
        if any("emptyDir" in v for v in dig(p, "spec", "volumes", default=[]) or []) and not delete_local:
            cluster.log("suc", f"drain {node}: cannot delete Pods with local storage: {p['metadata']['name']}", node=node)
            return False
        remaining += 1
        if p["metadata"].get("deletionTimestamp"):
            continue
        body: dict[str, Any] = {}
        if grace is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": int(grace)}
        try:
            cluster.evict(p["metadata"]["namespace"], p["metadata"]["name"], body)
            cluster.log("suc", f"drain {node}: evicted pod {p['metadata']['namespace']}/{p['metadata']['name']}", node=node)
        except errors.ApiError as e:
            if e.code == 429:
                cluster.log("suc", f"drain {node}: eviction of {p['metadata']['name']} refused: {e.message}", node=node)
    if remaining and limit and time.monotonic() - st.since.get(jname, time.monotonic()) > limit:
        cluster.log("suc", f"drain {node}: timed out; the drain container fails and the Job retries", node=node)
        st.since[jname] = time.monotonic()
    return remaining == 0


def _duration(v: Any) -> float:
    """A drain timeout: an int (nanoseconds) or a Go duration string like `5m`/`30s`."""
    if isinstance(v, int | float):
        return float(v) / 1e9
    text = str(v).strip()
    total, num = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            num += ch
            i += 1
            continue
        unit = "ms" if text[i:i + 2] == "ms" else ch
        total += float(num or 0) * units.get(unit, 1)
        num = ""
        i += len(unit)
    if num:
        total += float(num)
    return total


def _complete(cluster: Cluster, plan: dict[str, Any], node: str, h: str) -> None:
    spec = plan.get("spec") or {}
    obj = cluster.store.get("nodes", "", node)
    if obj is None:
        return
    label = _plan_label(plan["metadata"]["name"])
    if (obj["metadata"].get("labels") or {}).get(label) == h:
        return
    obj["metadata"].setdefault("labels", {})[label] = h
    if spec.get("drain") is not None or spec.get("cordon"):
        obj["spec"].pop("unschedulable", None)
    cluster.api.update(cluster.rt("nodes"), "", node, obj, check_rv=False)
    cluster.log("suc", f"plan {plan['metadata']['name']}: node {node} done", node=node)
