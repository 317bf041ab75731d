"""Kubelets and the node lifecycle controller of one cluster.

Kubelets register their Node, renew their Lease every `heartbeat`, report
node status every `node_status` (or at once on a change), start bound pods
after `pod_start` and finish deletions.  The node lifecycle controller notices
leases that stop moving, marks the node Unknown, taints it and evicts pods
whose tolerations run out, so ReplicaSets replace them on other nodes.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from ..loop import Timer
from ..util import dig, now_iso, set_condition
from . import pod_active

if TYPE_CHECKING:
    from ..cluster import Cluster, NodeRuntime
    from . import ControllerManager

UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
RUNTIMES = {"k3s": "containerd://1.3.3-k3s2", "rke": "docker://19.3.5", "imported": "containerd://1.6.20"}


def micro_time(at: float | None = None) -> str:
    t = at if at is not None else time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def node_object(cluster: Cluster, rt: NodeRuntime, index: int) -> dict[str, Any]:
    """A Node as its kubelet registers it (full nodeInfo: clients require it)."""
    h = hashlib.sha256(f"{cluster.name}/{rt.name}".encode()).hexdigest()
    labels = {
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": rt.name, "kubernetes.io/os": "linux",
    }
    taints: list[dict[str, Any]] = []
    annotations = {"node.alpha.kubernetes.io/ttl": "0",
                   "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    if cluster.kind == "rke":
        for role in rt.roles:
            labels[f"node-role.kubernetes.io/{role}"] = "true"
        if "worker" not in rt.roles:
            if "controlplane" in rt.roles:
                taints.append({"key": "node-role.kubernetes.io/controlplane", "value": "true", "effect": "NoSchedule"})
            if "etcd" in rt.roles:
                taints.append({"key": "node-role.kubernetes.io/etcd", "value": "true", "effect": "NoExecute"})
        annotations["rke.cattle.io/internal-ip"] = rt.ip
    elif cluster.kind == "k3s":
        labels["k3s.io/hostname"] = rt.name
        labels["k3s.io/internal-ip"] = rt.ip
        labels["node.kubernetes.io/instance-type"] = "k3s"
        if "server" in rt.roles or "master" in rt.roles:
            labels["node-role.kubernetes.io/master"] = "true"
            if cluster.minor >= 20:
                labels["node-role.kubernetes.io/control-plane"] = "true"
        annotations["k3s.io/node-args"] = '["server"]' if "server" in rt.roles else '["agent"]'
    else:
        for role in rt.roles:
            if role not in ("worker",):
                labels[f"node-role.kubernetes.io/{role}"] = ""
    labels.update(rt.extra_labels)
    now = now_iso()
    cpu, mem = "4", "8152812Ki"
    node: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": rt.name, "labels": labels, "annotations": annotations},
        "spec": {"podCIDR": f"10.42.{index}.0/24"},
        "status": {
            "capacity": {"cpu": cpu, "ephemeral-storage": "101445540Ki", "hugepages-1Gi": "0",
                         "hugepages-2Mi": "0", "memory": mem, "pods": rt.max_pods},
            "allocatable": {"cpu": cpu, "ephemeral-storage": "98688573818", "hugepages-1Gi": "0",
                            "hugepages-2Mi": "0", "memory": "8050412Ki", "pods": rt.max_pods},
            "conditions": _conditions(now, True),
            "addresses": [{"type": "InternalIP", "address": rt.ip}, {"type": "Hostname", "address": rt.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": h[:32], "systemUUID": f"{h[32:40]}-{h[40:44]}-{h[44:48]}-{h[48:52]}-{h[52:64]}".upper(),
                "bootID": h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32],
                "kernelVersion": "5.4.0-42-generic", "osImage": "Ubuntu 20.04.1 LTS",
                "containerRuntimeVersion": RUNTIMES.get(cluster.kind, RUNTIMES["imported"]),
                "kubeletVersion": rt.version, "kubeProxyVersion": rt.version,
                "operatingSystem": "linux", "architecture": "amd64",
            },
            "images": [{"names": ["docker.io/rancher/pause@sha256:d22591b61e9c2b52aecbf07106d5db313c4f178e404d660b32517b18fcbf0144",
                                  "docker.io/rancher/pause:3.1"], "sizeBytes": 326597}],
        },
    }
    if cluster.minor >= 16:
        node["spec"]["podCIDRs"] = [node["spec"]["podCIDR"]]
    if taints:
        node["spec"]["taints"] = taints
    return node


def _conditions(now: str, ready: bool, message: str = "") -> list[dict[str, Any]]:
    out = [
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": now, "lastTransitionTime": now,
         "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
        {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": now, "lastTransitionTime": now,
         "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
        {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": now, "lastTransitionTime": now,
         "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
    ]
    if ready:
        out.append({"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now,
                    "reason": "KubeletReady", "message": "kubelet is posting ready status"})
    else:
        out.append({"type": "Ready", "status": "False", "lastHeartbeatTime": now, "lastTransitionTime": now,
                    "reason": "KubeletNotReady", "message": message})
    return out


class Kubelets:
    """All kubelets of a cluster plus its node lifecycle controller."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._pod_timers: dict[str, Timer] = {}
        self._ip_counter: dict[str, int] = {}
        self._lease_meta: dict[str, dict[str, Any]] = {}
        self._observed: dict[str, tuple[int, float]] = {}  # node -> (lease revision, monotonic seen)
        self._taint_since: dict[str, float] = {}
        self._timers: list[Timer] = []
        self._stopped = False
        self._node_index: dict[str, int] = {}

    # ------------------------------------------------------------------ registration
    def register(self, rt: NodeRuntime) -> None:
        c = self.cluster
        idx = self._node_index.setdefault(rt.name, len(self._node_index) + 1)
        if c.store.entry("nodes", "", rt.name) is None:
            c.api.create(c.rt("nodes"), None, node_object(c, rt, idx))
        self.renew(rt)
        rt.last_status = time.monotonic()

    def renew(self, rt: NodeRuntime) -> None:
        c = self.cluster
        meta = self._lease_meta.get(rt.name)
        node = c.store.entry("nodes", "", rt.name)
        if node is None:
            return
        if meta is None or c.store.entry("leases.coordination.k8s.io", "kube-node-lease", rt.name) is None:
            if c.store.entry("namespaces", "", "kube-node-lease") is None:
                return
            node_uid = node.obj()["metadata"]["uid"]
            lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                     "metadata": {"name": rt.name, "namespace": "kube-node-lease",
                                  "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": rt.name, "uid": node_uid}]},
                     "spec": {"holderIdentity": rt.name, "leaseDurationSeconds": 40, "renewTime": micro_time()}}
            existing = c.store.get("leases.coordination.k8s.io", "kube-node-lease", rt.name)
            if existing is None:
                created = c.api.create(c.rt("leases.coordination.k8s.io"), "kube-node-lease", lease)
                meta = {k: created["metadata"][k] for k in ("name", "namespace", "uid", "creationTimestamp", "ownerReferences")}
            else:
                meta = {k: existing["metadata"][k] for k in ("name", "namespace", "uid", "creationTimestamp") if k in existing["metadata"]}
                meta["ownerReferences"] = lease["metadata"]["ownerReferences"]
            self._lease_meta[rt.name] = meta
        obj = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": dict(meta),
               "spec": {"holderIdentity": rt.name, "leaseDurationSeconds": 40, "renewTime": micro_time()}}
        c.store.put("leases.coordination.k8s.io", obj)

    # ------------------------------------------------------------------ periodic work
    def start(self) -> None:
        t = self.cluster.timings
        self._every(t.heartbeat, self.heartbeat)
        self._every(max(0.02, min(t.node_grace / 4, 5.0)), self.lifecycle)

    def stop(self) -> None:
        self._stopped = True
        for tm in self._timers:
            tm.cancel()
        for tm in self._pod_timers.values():
            tm.cancel()

    def _every(self, period: float, fn: Any) -> None:
        import random

        def tick() -> None:
            if self._stopped:
                return
            with self.cluster.lock:  # the cluster keeps running while unreachable from outside
                fn()
            self._timers.append(self.cluster.loop.call_later(period, tick))
            if len(self._timers) > 8:
                self._timers = self._timers[-4:]

        self._timers.append(self.cluster.loop.call_later(random.uniform(0, period), tick))

    def heartbeat(self) -> None:
        """Every kubelet of the cluster renews its Lease; node status only when due."""
        c = self.cluster
        now_m = time.monotonic()
        status_every = c.timings.node_status
        c.quiet = True
        try:
            for rt in c.nodes.values():
                if not rt.kubelet_running:
                    continue
                if c.store.entry("nodes", "", rt.name) is None:
                    c.quiet = False
                    self.register(rt)
                    c.quiet = True
                    continue
                self.renew(rt)
                if now_m - rt.last_status >= status_every:
                    self.report_status(rt)
        finally:
            c.quiet = False

    def report_status(self, rt: NodeRuntime, ready: bool = True, message: str = "") -> None:
        """The kubelet's node status update; loud (wakes controllers) only if something changed."""
        c = self.cluster
        node = c.store.get("nodes", "", rt.name)
        if node is None:
            return
        rt.last_status = time.monotonic()
        st = node["status"]
        now = now_iso()
        changed = False
        info = st.setdefault("nodeInfo", {})
        if info.get("kubeletVersion") != rt.version:
            info["kubeletVersion"] = info["kubeProxyVersion"] = rt.version
            changed = True
        for part in ("capacity", "allocatable"):
            res = st.setdefault(part, {})
            if res.get("pods") != rt.max_pods:
                res["pods"] = rt.max_pods
                changed = True
        for ctype, reason, msg in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                                   ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                                   ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available")):
            changed |= set_condition(st, ctype, "False", reason, msg, now, heartbeat=True)
        was_ready = any(x.get("type") == "Ready" and x.get("status") == "True" for x in st.get("conditions") or [])
        if ready:
            changed |= set_condition(st, "Ready", "True", "KubeletReady", "kubelet is posting ready status", now, heartbeat=True)
        else:
            changed |= set_condition(st, "Ready", "False", "KubeletNotReady", message, now, heartbeat=True)
        was_quiet = c.quiet
        c.quiet = not changed
        try:
            c.api.update(c.rt("nodes"), "", rt.name, node, subresource="status", check_rv=False)
        finally:
            c.quiet = was_quiet
        if ready and not was_ready:
            self._pods_ready_again(rt.name)

    def _pods_ready_again(self, node: str) -> None:
        """A kubelet back after a restart reports its running containers ready again."""
        c = self.cluster
        rt = c.rt("pods")
        for (ns, name), e in c.store.entries("pods"):
            if not e.fields or e.fields[0] != node:
                continue
            pod = e.obj()
            st = pod.get("status") or {}
            if pod["metadata"].get("deletionTimestamp") or st.get("phase") != "Running":
                continue
            now = now_iso()
            if set_condition(st, "Ready", "True", now=now, probe=True):
                set_condition(st, "ContainersReady", "True", now=now, probe=True)
                for cs in st.get("containerStatuses") or []:
                    cs["ready"] = True
                c.api.update(rt, ns, name, pod, subresource="status", check_rv=False)

    def lifecycle(self) -> None:
        """Node lifecycle controller: stale leases -> Unknown + taints; taint-based eviction.

        Like the real one it notes when it *observed* each lease change (its own
        clock), and it reads only cached fields unless a node needs action.
        """
        c = self.cluster
        t = c.timings
        now_m = time.monotonic()
        changed_any = False
        leases = c.store._data.get("leases.coordination.k8s.io", {})
        for (_, name), e in c.store.entries("nodes"):
            lease = leases.get(("kube-node-lease", name))
            mark = lease.rv if lease is not None else 0
            seen = self._observed.get(name)
            if seen is None or seen[0] != mark:
                self._observed[name] = seen = (mark, now_m)
            _, ready_status, lc_taints = e.fields or ("", "Unknown", "")
            stale = now_m - seen[1] > t.node_grace
            if stale and ready_status != "Unknown":
                node = e.obj()
                now = now_iso()
                for cond in node["status"].get("conditions") or []:
                    cond["status"] = "Unknown"
                    cond["reason"] = "NodeStatusUnknown"
                    cond["message"] = "Kubelet stopped posting node status."
                    cond["lastTransitionTime"] = now
                c.api.update(c.rt("nodes"), "", name, node, subresource="status", check_rv=False)
                c.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady", "node-controller")
                self._pods_not_ready(name)
                ready_status = "Unknown"
                changed_any = True
            want: list[tuple[str, str]] = []
            if ready_status == "Unknown":
                want = [(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]
            elif ready_status == "False":
                want = [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
            if ",".join(sorted(f"{k}:{eff}" for k, eff in want)) != lc_taints:
                fresh = c.store.get("nodes", "", name)
                if fresh is None:
                    continue
                taints = list(dig(fresh, "spec", "taints", default=[]) or [])
                kept = [x for x in taints if x.get("key") not in (UNREACHABLE, NOT_READY)
                        or (x.get("key"), x.get("effect")) in want]
                for key, effect in want:
                    if not any(x.get("key") == key and x.get("effect") == effect for x in kept):
                        taint = {"key": key, "effect": effect}
                        if effect == "NoExecute":
                            taint["timeAdded"] = now_iso()
                            self._taint_since[name] = now_m
                        kept.append(taint)
                fresh["spec"]["taints"] = kept
                if not kept:
                    del fresh["spec"]["taints"]
                c.api.update(c.rt("nodes"), "", name, fresh, check_rv=False)
                changed_any = True
            if not want:
                self._taint_since.pop(name, None)
            else:
                self._taint_since.setdefault(name, now_m)
                self._evict_untolerated(name, want[1][0], now_m - self._taint_since[name])
        if changed_any:
            c.kick()

    def _pods_not_ready(self, node: str) -> None:
        c = self.cluster
        rt = c.rt("pods")
        for (ns, name), e in c.store.entries("pods"):
            if e.fields and e.fields[0] == node:
                pod = e.obj()
                st = pod.setdefault("status", {})
                if set_condition(st, "Ready", "False", now=now_iso(), probe=True):
                    for cs in st.get("containerStatuses") or []:
                        cs["ready"] = False
                    c.api.update(rt, ns, name, pod, subresource="status", check_rv=False)

    def _evict_untolerated(self, node: str, key: str, tainted_for: float) -> None:
        c = self.cluster
        scale = c.timings.eviction_timeout / 300.0
        for (ns, name), e in c.store.entries("pods"):
            if not e.fields or e.fields[0] != node:
                continue
            pod = e.obj()
            if pod["metadata"].get("deletionTimestamp"):
                continue
            limit: float | None = -1.0
            for tol in dig(pod, "spec", "tolerations", default=[]) or []:
                if tol.get("effect") not in (None, "", "NoExecute"):
                    continue
                if (tol.get("key") == key and tol.get("operator", "Equal") == "Exists") or (
                        not tol.get("key") and tol.get("operator") == "Exists"):
                    secs = tol.get("tolerationSeconds")
                    limit = None if secs is None else float(secs) * scale
                    break
            if limit is None or tainted_for < limit:
                continue
            c.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {ns}/{name}",
                    "taint-controller")
            try:
                c.api.delete(c.rt("pods"), ns, name, {})
            except Exception:
                pass

    # ------------------------------------------------------------------ pods
    def sync_pods(self, cluster: Cluster, cm: ControllerManager) -> None:
        c = self.cluster
        t = c.timings
        for pod in cm.objs("pods"):
            meta = pod["metadata"]
            node = dig(pod, "spec", "nodeName")
            uid = meta["uid"]
            if not node:
                if meta.get("deletionTimestamp"):
                    cm.delete("pods", meta["namespace"], meta["name"], grace=0)
                continue
            rt = c.nodes.get(node)
            if rt is None:
                if c.store.entry("nodes", "", node) is None:
                    cm.delete("pods", meta["namespace"], meta["name"], grace=0)  # pod GC: orphaned pod
                continue
            if not rt.kubelet_running:
                continue
            if uid in self._pod_timers:
                if meta.get("deletionTimestamp") and self._pod_timers[uid].kind != "stop":
                    self._pod_timers.pop(uid).cancel()
                else:
                    continue
            if meta.get("deletionTimestamp"):
                delay = t.pod_stop if (meta.get("deletionGracePeriodSeconds") or 0) > 0 else 0.0
                self._schedule(uid, delay, "stop", meta["namespace"], meta["name"])
                continue
            phase = dig(pod, "status", "phase", default="Pending")
            if "upgrade.cattle.io/controller" in (meta.get("labels") or {}) and _is_job_pod(pod):
                if phase == "Pending" and not dig(pod, "status", "hostIP"):
                    self._start(meta["namespace"], meta["name"], running=False)
                continue
            if phase == "Pending":
                if t.pod_start <= 0 or c.bootstrapping:
                    self._start(meta["namespace"], meta["name"])
                else:
                    self._creating(pod)
                    self._schedule(uid, t.pod_start, "start", meta["namespace"], meta["name"])
            elif phase == "Running" and _is_job_pod(pod):
                self._schedule(uid, t.job_run, "finish", meta["namespace"], meta["name"])

    def _schedule(self, uid: str, delay: float, kind: str, ns: str, name: str) -> None:
        def run() -> None:
            self._pod_timers.pop(uid, None)
            with self.cluster.lock:
                if kind == "start":
                    self._start(ns, name)
                elif kind == "finish":
                    self._finish(ns, name)
                else:
                    self._remove(ns, name)

        tm = self.cluster.loop.call_later(delay, run)
        tm.kind = kind
        self._pod_timers[uid] = tm

    def _creating(self, pod: dict[str, Any]) -> None:
        """What the kubelet reports while it pulls images: ContainerCreating."""
        if dig(pod, "status", "containerStatuses"):
            return
        c = self.cluster
        fresh = c.store.get("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
        if fresh is None:
            return
        rt = c.nodes.get(fresh["spec"]["nodeName"])
        st = fresh.setdefault("status", {})
        now = now_iso()
        st["hostIP"] = rt.ip if rt else ""
        st["startTime"] = now
        names = [x.get("name") for x in fresh["spec"].get("containers") or []]
        set_condition(st, "Initialized", "True", now=now, probe=True)
        set_condition(st, "Ready", "False", "ContainersNotReady", f"containers with unready status: [{' '.join(names)}]", now, probe=True)
        set_condition(st, "ContainersReady", "False", "ContainersNotReady", f"containers with unready status: [{' '.join(names)}]", now, probe=True)
        st["containerStatuses"] = [{"name": ctr.get("name"), "image": ctr.get("image", ""), "imageID": "", "ready": False,
                                    "restartCount": 0, "started": False,
                                    "state": {"waiting": {"reason": "ContainerCreating"}}}
                                   for ctr in fresh["spec"].get("containers") or []]
        order = {"Initialized": 0, "Ready": 1, "ContainersReady": 2, "PodScheduled": 3}
        st["conditions"].sort(key=lambda x: order.get(x.get("type"), 9))
        c.api.update(c.rt("pods"), fresh["metadata"]["namespace"], fresh["metadata"]["name"], fresh,
                     subresource="status", check_rv=False)

    def _pod_ip(self, node: str) -> str:
        n = self._ip_counter.get(node, 1) + 1
        self._ip_counter[node] = n
        idx = self._node_index.get(node, 0)
        return f"10.42.{idx}.{n % 250 + 2}"

    def _start(self, ns: str, name: str, running: bool = True) -> None:
        c = self.cluster
        pod = c.store.get("pods", ns, name)
        if pod is None or pod["metadata"].get("deletionTimestamp") or dig(pod, "status", "phase") != "Pending":
            return
        node = pod["spec"]["nodeName"]
        rt = c.nodes.get(node)
        if rt is None or not rt.kubelet_running:
            return
        now = now_iso()
        st = pod.setdefault("status", {})
        st["hostIP"] = rt.ip
        host_net = pod["spec"].get("hostNetwork")
        st["podIP"] = rt.ip if host_net else self._pod_ip(node)
        st["podIPs"] = [{"ip": st["podIP"]}]
        st["startTime"] = now
        set_condition(st, "Initialized", "True", now=now, probe=True)
        set_condition(st, "PodScheduled", "True", now=now, probe=True)
        statuses = []
        for i, ctr in enumerate(pod["spec"].get("containers") or []):
            cid = hashlib.sha256(f"{pod['metadata']['uid']}/{i}".encode()).hexdigest()
            image = ctr.get("image", "")
            s: dict[str, Any] = {"name": ctr.get("name"), "image": image if ":" in image.rsplit("/", 1)[-1] else image + ":latest",
                                 "imageID": f"docker-pullable://{image.split(':')[0]}@sha256:{cid[:64]}",
                                 "restartCount": 0, "ready": running, "started": running}
            if running:
                s["containerID"] = f"containerd://{cid}"
                s["state"] = {"running": {"startedAt": now}}
            else:
                s["state"] = {"waiting": {"reason": "PodInitializing"}}
            statuses.append(s)
        st["containerStatuses"] = statuses
        if pod["spec"].get("initContainers"):
            st["initContainerStatuses"] = [
                {"name": ic.get("name"), "image": ic.get("image", ""), "imageID": "", "restartCount": 0, "ready": False,
                 "state": {"waiting": {"reason": "PodInitializing"}} if not running else
                 {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}
                for ic in pod["spec"]["initContainers"]]
        if running:
            st["phase"] = "Running"
            set_condition(st, "ContainersReady", "True", now=now, probe=True)
            set_condition(st, "Ready", "True", now=now, probe=True)
        else:
            set_condition(st, "ContainersReady", "False", "ContainersNotReady", "containers with unready status: [upgrade]", now, probe=True)
            set_condition(st, "Ready", "False", "ContainersNotReady", "containers with unready status: [upgrade]", now, probe=True)
        order = {"Initialized": 0, "Ready": 1, "ContainersReady": 2, "PodScheduled": 3}
        st["conditions"].sort(key=lambda x: order.get(x.get("type"), 9))
        c.api.update(c.rt("pods"), ns, name, pod, subresource="status", check_rv=False)
        if running and c.record_events:
            for ctr in pod["spec"].get("containers") or []:
                cname = ctr.get("name")
                c.event(pod, "Normal", "Pulled", f'Container image "{ctr.get("image")}" already present on machine',
                        "kubelet", node)
                c.event(pod, "Normal", "Created", f"Created container {cname}", "kubelet", node)
                c.event(pod, "Normal", "Started", f"Started container {cname}", "kubelet", node)

    def _finish(self, ns: str, name: str, exit_code: int = 0) -> None:
        c = self.cluster
        pod = c.store.get("pods", ns, name)
        if pod is None or dig(pod, "status", "phase") != "Running":
            return
        now = now_iso()
        st = pod["status"]
        st["phase"] = "Succeeded" if exit_code == 0 else "Failed"
        for cs in st.get("containerStatuses") or []:
            started = dig(cs, "state", "running", "startedAt", default=now)
            cs["state"] = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                          "startedAt": started, "finishedAt": now,
                                          "containerID": cs.get("containerID", "")}}
            cs["ready"] = False
            cs["started"] = False
        set_condition(st, "Ready", "False", "PodCompleted", "", now, probe=True)
        set_condition(st, "ContainersReady", "False", "PodCompleted", "", now, probe=True)
        c.api.update(c.rt("pods"), ns, name, pod, subresource="status", check_rv=False)

    def _remove(self, ns: str, name: str) -> None:
        c = self.cluster
        pod = c.store.get("pods", ns, name)
        if pod is None or not pod["metadata"].get("deletionTimestamp"):
            return
        node = dig(pod, "spec", "nodeName")
        rt = c.nodes.get(node or "")
        if rt is not None and not rt.kubelet_running:
            return
        if pod["metadata"].get("finalizers"):
            return
        c.api.delete(c.rt("pods"), ns, name, {"gracePeriodSeconds": 0})


def _is_job_pod(pod: dict[str, Any]) -> bool:
    return any(r.get("kind") == "Job" for r in dig(pod, "metadata", "ownerReferences", default=[])) and \
        dig(pod, "spec", "restartPolicy") in ("Never", "OnFailure") and pod_active(pod)
