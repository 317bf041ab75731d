"""Server-side printing: `meta.k8s.io/v1` Table objects for `kubectl get`.

kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints
whatever columns the server returns, so the columns here mirror the real
server's printers (pkg/printers/internalversion).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .util import age, dig, human_duration, parse_time

Col = tuple[str, str, int, str]  # name, type, priority, description
Row = Callable[[dict[str, Any], float], list[Any]]

_NAME: Col = ("Name", "string", 0, "Name must be unique within a namespace. More info: http://kubernetes.io/docs/user-guide/identifiers#names")
_AGE: Col = ("Age", "string", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.")


def _ready_status(node: dict[str, Any]) -> str:
    status = "Unknown"
    for c in dig(node, "status", "conditions", default=[]):
        if c.get("type") == "Ready":
            status = "Ready" if c.get("status") == "True" else ("NotReady" if c.get("status") == "False" else "Unknown")
    if dig(node, "spec", "unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _roles(node: dict[str, Any]) -> str:
    roles = []
    for k, v in (dig(node, "metadata", "labels", default={}) or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            roles.append(k.split("/", 1)[1])
        elif k == "kubernetes.io/role" and v:
            roles.append(v)
    return ",".join(sorted(set(roles))) or "<none>"


def _addr(node: dict[str, Any], kind: str) -> str:
    for a in dig(node, "status", "addresses", default=[]):
        if a.get("type") == kind:
            return a.get("address", "<none>")
    return "<none>"


def pod_status(pod: dict[str, Any]) -> tuple[str, int, int, int]:
    """(status text, ready containers, total containers, restarts) as kubectl shows them."""
    st = pod.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Pending"
    total = len(dig(pod, "spec", "containers", default=[]))
    ready = restarts = 0
    init_statuses = st.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        term = dig(cs, "state", "terminated")
        if term and term.get("exitCode") == 0:
            continue
        waiting = dig(cs, "state", "waiting")
        if term:
            reason = "Init:" + (term.get("reason") or "Error")
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(dig(pod, 'spec', 'initContainers', default=[]))}"
        break
    else:
        for cs in st.get("containerStatuses") or []:
            restarts += cs.get("restartCount", 0)
            waiting = dig(cs, "state", "waiting")
            term = dig(cs, "state", "terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            if cs.get("ready") and dig(cs, "state", "running"):
                ready += 1
    if dig(pod, "metadata", "deletionTimestamp"):
        reason = "Unknown" if st.get("reason") == "NodeLost" else "Terminating"
    return reason, ready, total, restarts


def _containers(obj: dict[str, Any]) -> tuple[str, str]:
    cs = dig(obj, "spec", "template", "spec", "containers", default=[])
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _selector(sel: dict[str, Any] | None) -> str:
    if not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op = e.get("operator")
        if op in ("In", "NotIn"):
            parts.append(f"{e.get('key')} {op.lower()} ({','.join(e.get('values') or [])})")
        elif op == "Exists":
            parts.append(e.get("key", ""))
        else:
            parts.append("!" + e.get("key", ""))
    return ",".join(parts) or "<none>"


def _svc_ports(svc: dict[str, Any]) -> str:
    out = []
    for p in dig(svc, "spec", "ports", default=[]):
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _endpoints(ep: dict[str, Any]) -> str:
    out = []
    for sub in ep.get("subsets") or []:
        ports = sub.get("ports") or [{}]
        for a in sub.get("addresses") or []:
            for p in ports:
                out.append(f"{a.get('ip')}:{p['port']}" if p.get("port") else a.get("ip", ""))
    if not out:
        return "<none>"
    if len(out) > 3:
        return ",".join(out[:3]) + f" + {len(out) - 3} more..."
    return ",".join(out)


def _event_object(ev: dict[str, Any]) -> str:
    io = ev.get("involvedObject") or {}
    return f"{(io.get('kind') or '').lower()}/{io.get('name', '')}"


def _last_seen(ev: dict[str, Any], now: float) -> str:
    ts = parse_time(ev.get("lastTimestamp") or ev.get("eventTime") or dig(ev, "metadata", "creationTimestamp"))
    return human_duration(now - ts) if ts else "<unknown>"


def _job_duration(job: dict[str, Any], now: float) -> str:
    start = parse_time(dig(job, "status", "startTime"))
    if not start:
        return ""
    end = parse_time(dig(job, "status", "completionTime")) or now
    return human_duration(end - start)


def _pod_row(p: dict[str, Any], now: float) -> list[Any]:
    status, ready, total, restarts = pod_status(p)
    return [p["metadata"]["name"], f"{ready}/{total}", status, restarts, age(p, now),
            dig(p, "status", "podIP", default="<none>"), dig(p, "spec", "nodeName", default="<none>"),
            dig(p, "status", "nominatedNodeName", default="<none>"), "<none>"]


def _role_ref(b: dict[str, Any]) -> str:
    return f"{dig(b, 'roleRef', 'kind', default='')}/{dig(b, 'roleRef', 'name', default='')}"


def _subjects(b: dict[str, Any], kind: str) -> str:
    names = []
    for s in b.get("subjects") or []:
        if s.get("kind") == kind:
            names.append(f"{s.get('namespace')}/{s.get('name')}" if kind == "ServiceAccount" else s.get("name", ""))
    return ", ".join(names)


TABLES: dict[str, tuple[list[Col], Row]] = {
    "Node": ([_NAME, ("Status", "string", 0, "The status of the node"),
              ("Roles", "string", 0, "The roles of the node"), _AGE,
              ("Version", "string", 0, "Kubelet Version reported by the node."),
              ("Internal-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
              ("External-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
              ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
              ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
              ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).")],
             lambda n, now: [n["metadata"]["name"], _ready_status(n), _roles(n), age(n, now),
                             dig(n, "status", "nodeInfo", "kubeletVersion", default=""),
                             _addr(n, "InternalIP"), _addr(n, "ExternalIP"),
                             dig(n, "status", "nodeInfo", "osImage", default="<unknown>"),
                             dig(n, "status", "nodeInfo", "kernelVersion", default="<unknown>"),
                             dig(n, "status", "nodeInfo", "containerRuntimeVersion", default="<unknown>")]),
    "Pod": ([_NAME, ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
             ("Status", "string", 0, "The aggregate status of the containers in this pod."),
             ("Restarts", "integer", 0, "The number of times the containers in this pod have been restarted."), _AGE,
             ("IP", "string", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
             ("Node", "string", 1, "NodeName is a request to schedule this pod onto a specific node."),
             ("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
             ("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness.")],
            _pod_row),
    "Namespace": ([_NAME, ("Status", "string", 0, "The status of the namespace"), _AGE],
                  lambda o, now: [o["metadata"]["name"], dig(o, "status", "phase", default=""), age(o, now)]),
    "Deployment": ([_NAME, ("Ready", "string", 0, "Number of the pod with ready state"),
                    ("Up-to-date", "integer", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                    ("Available", "integer", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                    _AGE, ("Containers", "string", 1, "Names of each container in the template."),
                    ("Images", "string", 1, "Images referenced by each container in the template."),
                    ("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.")],
                   lambda o, now: [o["metadata"]["name"],
                                   f"{dig(o, 'status', 'readyReplicas', default=0)}/{dig(o, 'spec', 'replicas', default=0)}",
                                   dig(o, "status", "updatedReplicas", default=0),
                                   dig(o, "status", "availableReplicas", default=0), age(o, now),
                                   *_containers(o), _selector(dig(o, "spec", "selector"))]),
    "ReplicaSet": ([_NAME, ("Desired", "integer", 0, "Replicas is the number of desired replicas."),
                    ("Current", "integer", 0, "Replicas is the most recently oberved number of replicas."),
                    ("Ready", "integer", 0, "The number of ready replicas for this replica set."), _AGE,
                    ("Containers", "string", 1, "Names of each container in the template."),
                    ("Images", "string", 1, "Images referenced by each container in the template."),
                    ("Selector", "string", 1, "Selector is a label query over pods that should match the replica count.")],
                   lambda o, now: [o["metadata"]["name"], dig(o, "spec", "replicas", default=0),
                                   dig(o, "status", "replicas", default=0), dig(o, "status", "readyReplicas", default=0),
                                   age(o, now), *_containers(o), _selector(dig(o, "spec", "selector"))]),
    "DaemonSet": ([_NAME, ("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod."),
                   ("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
                   ("Ready", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
                   ("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
                   ("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
                   ("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
                   _AGE, ("Containers", "string", 1, "Names of each container in the template."),
                   ("Images", "string", 1, "Images referenced by each container in the template."),
                   ("Selector", "string", 1, "A label query over pods that are managed by the daemon set.")],
                  lambda o, now: [o["metadata"]["name"], dig(o, "status", "desiredNumberScheduled", default=0),
                                  dig(o, "status", "currentNumberScheduled", default=0),
                                  dig(o, "status", "numberReady", default=0),
                                  dig(o, "status", "updatedNumberScheduled", default=0),
                                  dig(o, "status", "numberAvailable", default=0),
                                  ",".join(f"{k}={v}" for k, v in (dig(o, "spec", "template", "spec", "nodeSelector", default={}) or {}).items()) or "<none>",
                                  age(o, now), *_containers(o), _selector(dig(o, "spec", "selector"))]),
    "StatefulSet": ([_NAME, ("Ready", "string", 0, "Number of the pod with ready state"), _AGE,
                     ("Containers", "string", 1, "Names of each container in the template."),
                     ("Images", "string", 1, "Images referenced by each container in the template.")],
                    lambda o, now: [o["metadata"]["name"],
                                    f"{dig(o, 'status', 'readyReplicas', default=0)}/{dig(o, 'spec', 'replicas', default=0)}",
                                    age(o, now), *_containers(o)]),
    "Job": ([_NAME, ("Completions", "string", 0, "The desired number of successfully finished pods the job should be run with."),
             ("Duration", "string", 0, "Time required to complete the job."), _AGE,
             ("Containers", "string", 1, "Names of each container in the template."),
             ("Images", "string", 1, "Images referenced by each container in the template."),
             ("Selector", "string", 1, "A label query over pods that should match the pod count.")],
            lambda o, now: [o["metadata"]["name"],
                            f"{dig(o, 'status', 'succeeded', default=0)}/{dig(o, 'spec', 'completions', default=1)}",
                            _job_duration(o, now), age(o, now), *_containers(o), _selector(dig(o, "spec", "selector"))]),
    "Service": ([_NAME, ("Type", "string", 0, "type determines how the Service is exposed."),
                 ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
                 ("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
                 ("Port(s)", "string", 0, "The list of ports that are exposed by this service."), _AGE,
                 ("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector.")],
                lambda o, now: [o["metadata"]["name"], dig(o, "spec", "type", default="ClusterIP"),
                                dig(o, "spec", "clusterIP", default="<none>"),
                                ",".join(dig(o, "spec", "externalIPs", default=[]) or []) or "<none>",
                                _svc_ports(o), age(o, now),
                                ",".join(f"{k}={v}" for k, v in (dig(o, "spec", "selector", default={}) or {}).items()) or "<none>"]),
    "Endpoints": ([_NAME, ("Endpoints", "string", 0, "Endpoints of the service"), _AGE],
                  lambda o, now: [o["metadata"]["name"], _endpoints(o), age(o, now)]),
    "ConfigMap": ([_NAME, ("Data", "string", 0, "Data contains the configuration data."), _AGE],
                  lambda o, now: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o, now)]),
    "Secret": ([_NAME, ("Type", "string", 0, "The type of the secret"), ("Data", "string", 0, "The number of data items"), _AGE],
               lambda o, now: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}), age(o, now)]),
    "ServiceAccount": ([_NAME, ("Secrets", "string", 0, "Secrets is the list of secrets allowed to be used by pods running using this ServiceAccount."), _AGE],
                       lambda o, now: [o["metadata"]["name"], len(o.get("secrets") or []), age(o, now)]),
    "Event": ([("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
               ("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
               ("Reason", "string", 0, "The reason the transition into the object's current status."),
               ("Object", "string", 0, "The object that this event is about."),
               ("Message", "string", 0, "A human-readable description of the status of this operation."),
               ("Name", "string", 1, "Name must be unique within a namespace.")],
              lambda o, now: [_last_seen(o, now), o.get("type", ""), o.get("reason", ""), _event_object(o),
                              o.get("message", ""), o["metadata"]["name"]]),
    "PodDisruptionBudget": ([_NAME, ("Min Available", "string", 0, "The minimum number of pods that must be available simultaneously. This can be either an integer or percentage."),
                             ("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable simultaneously. This can be either an integer or percentage."),
                             ("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."), _AGE],
                            lambda o, now: [o["metadata"]["name"], str(dig(o, "spec", "minAvailable", default="N/A")),
                                            str(dig(o, "spec", "maxUnavailable", default="N/A")),
                                            dig(o, "status", "disruptionsAllowed", default=dig(o, "status", "podDisruptionsAllowed", default=0)),
                                            age(o, now)]),
    "NetworkPolicy": ([_NAME, ("Pod-Selector", "string", 0, "Selects the pods to which this NetworkPolicy object applies."), _AGE],
                      lambda o, now: [o["metadata"]["name"], _selector(dig(o, "spec", "podSelector")), age(o, now)]),
    "Role": ([_NAME, ("Created At", "date", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.")],
             lambda o, now: [o["metadata"]["name"], dig(o, "metadata", "creationTimestamp", default="")]),
    "ClusterRole": ([_NAME, ("Created At", "date", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.")],
                    lambda o, now: [o["metadata"]["name"], dig(o, "metadata", "creationTimestamp", default="")]),
    "RoleBinding": ([_NAME, ("Role", "string", 0, "Role"), _AGE, ("Users", "string", 1, "Users in the roleBinding"),
                     ("Groups", "string", 1, "Groups in the roleBinding"), ("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding")],
                    lambda o, now: [o["metadata"]["name"], _role_ref(o), age(o, now), _subjects(o, "User"),
                                    _subjects(o, "Group"), _subjects(o, "ServiceAccount")]),
    "ClusterRoleBinding": ([_NAME, ("Role", "string", 0, "Role"), _AGE, ("Users", "string", 1, "Users in the roleBinding"),
                            ("Groups", "string", 1, "Groups in the roleBinding"), ("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding")],
                           lambda o, now: [o["metadata"]["name"], _role_ref(o), age(o, now), _subjects(o, "User"),
                                           _subjects(o, "Group"), _subjects(o, "ServiceAccount")]),
    "ComponentStatus": ([_NAME, ("Status", "string", 0, "Status of the component conditions"),
                         ("Message", "string", 0, "Message of the component conditions"),
                         ("Error", "string", 0, "Error of the component conditions")],
                        lambda o, now: [o["metadata"]["name"],
                                        "Healthy" if any(c.get("type") == "Healthy" and c.get("status") == "True"
                                                         for c in o.get("conditions") or []) else "Unhealthy",
                                        ",".join(c.get("message", "") for c in o.get("conditions") or []),
                                        ",".join(c.get("error", "") for c in o.get("conditions") or [])]),
    "Lease": ([_NAME, ("Holder", "string", 0, "Name of the Lease Holder"), _AGE],
              lambda o, now: [o["metadata"]["name"], dig(o, "spec", "holderIdentity", default="<none>"), age(o, now)]),
    "PodSecurityPolicy": ([_NAME, ("Priv", "string", 0, "Determines if a pod can request to be run as privileged"),
                           ("Caps", "string", 0, "Capabilities"), ("SELinux", "string", 0, "SELinux strategy"),
                           ("RunAsUser", "string", 0, "RunAsUser strategy"), ("FsGroup", "string", 0, "FsGroup strategy"),
                           ("SupGroup", "string", 0, "SupplementalGroups strategy"),
                           ("ReadOnlyRootFs", "string", 0, "Read only root filesystem"),
                           ("Volumes", "string", 0, "White list of allowed volumes")],
                          lambda o, now: [o["metadata"]["name"], str(bool(dig(o, "spec", "privileged"))).lower(),
                                          ",".join(dig(o, "spec", "allowedCapabilities", default=[]) or []) or "<none>",
                                          dig(o, "spec", "seLinux", "rule", default=""),
                                          dig(o, "spec", "runAsUser", "rule", default=""),
                                          dig(o, "spec", "fsGroup", "rule", default=""),
                                          dig(o, "spec", "supplementalGroups", "rule", default=""),
                                          str(bool(dig(o, "spec", "readOnlyRootFilesystem"))).lower(),
                                          ",".join(dig(o, "spec", "volumes", default=[]) or [])]),
}

_DEFAULT: tuple[list[Col], Row] = (
    [_NAME, ("Created At", "date", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.")],
    lambda o, now: [o["metadata"]["name"], dig(o, "metadata", "creationTimestamp", default="")],
)


def _json_path(obj: Any, path: str) -> Any:
    """Evaluate the simple `.a.b[0].c` JSONPaths CRD printer columns use."""
    cur = obj
    for part in path.strip().lstrip(".").replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            try:
                cur = cur[int(part[1:-1])] if isinstance(cur, list) else None
            except (ValueError, IndexError):
                return None
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
        if cur is None:
            return None
    return cur


def crd_table(columns: tuple[dict[str, Any], ...]) -> tuple[list[Col], Row]:
    cols: list[Col] = [_NAME]
    specs: list[tuple[str, str]] = []
    for c in columns:
        cols.append((c.get("name", ""), c.get("type", "string"), int(c.get("priority", 0)), c.get("description", "")))
        specs.append((c.get("jsonPath") or c.get("JSONPath") or "", c.get("type", "string")))
    if not any(c[0] == "Age" for c in cols):
        cols.append(_AGE)

    def row(o: dict[str, Any], now: float) -> list[Any]:
        cells: list[Any] = [o["metadata"]["name"]]
        for path, typ in specs:
            v = _json_path(o, path)
            if typ == "date" and isinstance(v, str):
                ts = parse_time(v)
                v = human_duration(now - ts) if ts else v
            cells.append(v)
        if len(cells) < len(cols):
            cells.append(age(o, now))
        return cells

    return cols, row


def table_for(kind: str, printer_columns: tuple[dict[str, Any], ...] = (), custom: bool = False) -> tuple[list[Col], Row]:
    if custom:
        return crd_table(printer_columns)
    return TABLES.get(kind, _DEFAULT)


def column_definitions(cols: list[Col]) -> list[dict[str, Any]]:
    return [
        {"name": n, "type": t, "format": "name" if n == "Name" else "", "description": d, "priority": p}
        for n, t, p, d in cols
    ]


def partial_metadata(obj: dict[str, Any], meta_version: str = "v1") -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{meta_version}", "metadata": obj.get("metadata", {})}


def build_table(objs: list[dict[str, Any]], table: tuple[list[Col], Row], include: str, meta_version: str,
                list_meta: dict[str, Any], headers: bool = True) -> dict[str, Any]:
    cols, rowfn = table
    now = time.time()
    rows = []
    for o in objs:
        row: dict[str, Any] = {"cells": rowfn(o, now)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = partial_metadata(o, meta_version)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{meta_version}",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(cols) if headers else None,
        "rows": rows,
    }
