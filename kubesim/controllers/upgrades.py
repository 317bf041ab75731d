"""system-upgrade-controller (SUC) and the host images its Jobs run.

The controller imitates rancher/system-upgrade-controller: it runs only while
Deployment `system-upgrade/system-upgrade-controller` has a ready replica (and,
like the real one at start-up, registers the `plans.upgrade.cattle.io` CRD if it
is missing).  For each Plan it resolves `status.latestVersion` (the version with
`+` as `-`), digests `status.latestHash` (sha224 of latestVersion,
serviceAccountName, the fields named by the `upgrade.cattle.io/digest` annotation
and each secret's content hash), picks at most `concurrency` nodes matching the
selector and not labelled `plan.upgrade.cattle.io/<plan>=<hash>` (sorted as SUC
does, listed in `status.applying`) and creates one Job per node named
`apply-<plan>-on-<node>-with-<hash>`.  When a Job completes, the node is labelled
with the hash and uncordoned if the plan cordons or drains; a failed Job marks the
plan `Complete=False` (`JobFailed`) and the node stays unlabelled.

The Jobs' pods are run by the node's kubelet container by container; what a
container does to the machine depends on its image (see `HOST_IMAGES`), so a
hand-made Job running the same images has the same effect.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import errors
from ..resources import parse_version
from ..selectors import parse_label_selector, selector_from_match
from ..util import dig, now_iso, set_condition

if TYPE_CHECKING:
    from ..cluster import Cluster, NodeRuntime
    from . import ControllerManager

GROUP = "upgrade.cattle.io"
PLAN_KEY = "plans.upgrade.cattle.io"
CRD_KEY = "customresourcedefinitions.apiextensions.k8s.io"
SUC_NS = "system-upgrade"
SUC_NAME = "system-upgrade-controller"
LABEL_CONTROLLER = GROUP + "/controller"
LABEL_EXCLUSIVE = GROUP + "/exclusive"
LABEL_NODE = GROUP + "/node"
LABEL_PLAN = GROUP + "/plan"
LABEL_VERSION = GROUP + "/version"
ANN_DIGEST = GROUP + "/digest"
ANN_TTL = GROUP + "/ttl-seconds-after-finished"
HOSTNAME = "kubernetes.io/hostname"

# what SUC's own defaults are when its Deployment sets no environment
ENV_DEFAULTS = {"SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT": "2", "SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS": "600",
                "SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE": "rancher/kubectl:v1.30.3",
                "SYSTEM_UPGRADE_JOB_TTL_SECONDS_AFTER_FINISH": "900", "SYSTEM_UPGRADE_JOB_PRIVILEGED": "true",
                "SYSTEM_UPGRADE_JOB_IMAGE_PULL_POLICY": "IfNotPresent"}

UPGRADE_IMAGES = ("rancher/k3s-upgrade", "rancher/rke2-upgrade")
NODE_CONFIG_IMAGE = "corral/node-config"
KUBECTL_IMAGES = ("rancher/kubectl", "bitnami/kubectl")
PLAIN_IMAGES = ("busybox", "alpine", "library/busybox", "library/alpine")
ETCD_SNAPSHOT_IMAGE = "corral/etcd-snapshot"  # played by controllers/etcdsnapshot.py
HOST_IMAGES = UPGRADE_IMAGES + (NODE_CONFIG_IMAGE, ETCD_SNAPSHOT_IMAGE) + KUBECTL_IMAGES + PLAIN_IMAGES


def plan_label(plan: str) -> str:
    """The node label SUC sets when a plan's hash has been applied to the node."""
    return f"plan.upgrade.cattle.io/{plan}"


# ---------------------------------------------------------------------- the CRD
def plan_crd(minor: int) -> dict[str, Any]:
    """The Plan CRD as SUC registers it (v1beta1 shape before Kubernetes 1.16)."""
    cols = [("Image", ".spec.upgrade.image"), ("Channel", ".spec.channel"), ("Version", ".spec.version")]
    names = {"kind": "Plan", "plural": "plans", "singular": "plan", "listKind": "PlanList"}
    if minor < 16:
        return {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
                "metadata": {"name": PLAN_KEY},
                "spec": {"group": GROUP, "scope": "Namespaced", "names": names, "version": "v1",
                         "versions": [{"name": "v1", "served": True, "storage": True}],
                         "subresources": {"status": {}},
                         "additionalPrinterColumns": [{"name": n, "type": "string", "JSONPath": p} for n, p in cols]}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": PLAN_KEY},
            "spec": {"group": GROUP, "scope": "Namespaced", "names": names,
                     "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}},
                                   "additionalPrinterColumns": [{"name": n, "type": "string", "jsonPath": p}
                                                                for n, p in cols]}]}}


# ---------------------------------------------------------------------- machine-level effects
def begin_upgrade(cluster: Cluster, rt: NodeRuntime, version: str, on_done: Callable[[bool], None]) -> None:
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
            rt.failed_version = version  # the binary is replaced; systemd keeps trying to start it
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


def restart_kubelet(cluster: Cluster, rt: NodeRuntime, args: dict[str, str], on_done: Callable[[bool], None]) -> None:
    """Restart the kubelet with new flags: NotReady for `kubelet_restart`, then Ready with them."""
    kubelets = cluster.controllers.kubelets
    kubelets.report_status(rt, ready=False, message="kubelet is restarting: new kubelet arguments")
    rt.upgrading = True
    cluster.log("kubelet-args", f"node {rt.name}: kubelet restarting with {json.dumps(args, sort_keys=True)}",
                node=rt.name)

    def finish() -> None:
        if not rt.upgrading:
            return
        rt.upgrading = False
        rt.kubelet_args = dict(args)
        kubelets.renew(rt)
        kubelets.report_status(rt, ready=True)
        node = cluster.store.get("nodes", "", rt.name)
        if node is not None:
            cluster.event(node, "Normal", "Starting", "Starting kubelet.", "kubelet", rt.name)
        on_done(True)
        cluster.kick()

    cluster.later(cluster.timings.kubelet_restart, finish)


def node_version(cluster: Cluster, tag: str) -> str:
    """The kubelet version a node reports after an upgrade image with this tag ran:
    k3s keeps its `+k3sN` suffix, rke (and imported) clusters report plain `vX.Y.Z`."""
    major, minor, patch, suffix = parse_version(tag)
    base = f"v{major}.{minor}.{patch}"
    suffix = suffix.lstrip("-+")
    if cluster.kind == "k3s":
        return f"{base}+{suffix if suffix.startswith('k3s') else 'k3s1'}"
    return base


# ---------------------------------------------------------------------- SUC: is it installed and running?
def suc_running(cluster: Cluster) -> bool:
    """SUC acts only while its Deployment has a ready replica, as a real controller pod would."""
    dep = cluster.store.get("deployments.apps", SUC_NS, SUC_NAME)
    return dep is not None and not dep["metadata"].get("deletionTimestamp") and \
        int(dig(dep, "status", "readyReplicas", default=0) or 0) >= 1


def controller_env(cluster: Cluster) -> dict[str, str]:
    """The SYSTEM_UPGRADE_* settings of the controller pod (env and envFrom ConfigMaps)."""
    env = dict(ENV_DEFAULTS)
    dep = cluster.store.get("deployments.apps", SUC_NS, SUC_NAME)
    ctrs = dig(dep or {}, "spec", "template", "spec", "containers", default=[]) or []
    if not ctrs:
        return env
    for src in ctrs[0].get("envFrom") or []:
        ref = (src.get("configMapRef") or {}).get("name")
        cm = cluster.store.get("configmaps", SUC_NS, ref) if ref else None
        for k, v in ((cm or {}).get("data") or {}).items():
            env[(src.get("prefix") or "") + k] = str(v)
    for e in ctrs[0].get("env") or []:
        if "value" in e:
            env[e["name"]] = str(e["value"])
    return env


# ---------------------------------------------------------------------- hash, names
def munge_version(version: str) -> str:
    return version.replace("+", "-")


def _go_string(value: Any) -> str:
    """wrangler's convert.ToString: a list gives its first element, maps print like Go's fmt."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_string(v) if not isinstance(v, list) else _go_list(v)}"
                                 for k, v in sorted(value.items())) + "]"
    return str(value).strip()


def _go_list(values: list[Any]) -> str:
    return "[" + " ".join(_go_string(v) for v in values) + "]"


def secret_hash(secret: dict[str, Any]) -> str:
    """kubectl's SecretHash: sha256 of kind/name/type/data as JSON, first 10 hex chars re-lettered."""
    doc: dict[str, Any] = {"data": secret.get("data") or {}, "kind": "Secret",
                           "name": secret["metadata"]["name"], "type": secret.get("type", "Opaque")}
    if "immutable" in secret:
        doc["immutable"] = secret["immutable"]
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def latest_hash(plan: dict[str, Any], latest_version: str, secrets: dict[str, dict[str, Any]]) -> str:
    """SUC's plan digest: sha224(latestVersion, serviceAccountName, digest-annotation fields, secret hashes)."""
    h = hashlib.sha224()
    h.update(latest_version.encode())
    h.update(str(dig(plan, "spec", "serviceAccountName", default="") or "").encode())
    fields = (plan["metadata"].get("annotations") or {}).get(ANN_DIGEST, "")
    if fields:
        for entry in fields.split(","):
            h.update(_go_string(dig(plan, *entry.split("."), default=None)).encode())
    for s in dig(plan, "spec", "secrets", default=[]) or []:
        if s.get("ignoreUpdates"):
            continue
        secret = secrets.get(s.get("name", ""))
        if secret is not None:
            h.update(secret_hash(secret).encode())
    return h.hexdigest()


def safe_concat_name(*parts: str) -> str:
    """wrangler's name.SafeConcatName: join with '-', cap at 63 chars with a hash suffix."""
    full = "-".join(parts)
    if len(full) <= 63:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:5]
    return full[:57].rstrip("-.") + "-" + digest


def _go_duration(v: Any) -> str:
    """time.Duration(n).String() for an int drain timeout (nanoseconds); strings pass through."""
    if not isinstance(v, int | float) or isinstance(v, bool):
        return str(v)
    ns = int(v)
    if ns == 0:
        return "0s"
    secs = ns / 1e9
    if secs < 1:
        return f"{ns / 1e6:g}ms"
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = (f"{int(h)}h" if h else "") + (f"{int(m)}m" if h or m else "") + f"{s:g}s"
    return out


def parse_duration(v: Any) -> float:
    """A drain timeout in seconds: an int (nanoseconds) or a Go duration string like `5m`/`30s`."""
    if isinstance(v, int | float):
        return float(v) / 1e9
    text = str(v).strip()
    total, num, i = 0.0, "", 0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
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


# ---------------------------------------------------------------------- the controller
def _cond(status: dict[str, Any], ctype: str, value: str, reason: str, message: str = "") -> None:
    """wrangler's condition setters: status, reason and message exactly as given."""
    conds = status.setdefault("conditions", [])
    now = now_iso()
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != value:
                c["lastTransitionTime"] = now
            if (c.get("status"), c.get("reason", ""), c.get("message", "")) != (value, reason, message):
                c["lastUpdateTime"] = now
            c["status"] = value
            c["reason"] = reason
            c["message"] = message
            if not message:
                c.pop("message")
            return
    c = {"type": ctype, "status": value, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason}
    if message:
        c["message"] = message
    conds.append(c)


def _get_cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), {})


def system_upgrade_controller(cluster: Cluster, cm: ControllerManager) -> None:
    """One pass of SUC: register the CRD, follow Jobs, then sync every Plan."""
    if not suc_running(cluster):
        return
    if cluster.store.entry(CRD_KEY, "", PLAN_KEY) is None:
        cm.create(CRD_KEY, plan_crd(cluster.minor))
        cluster.log("suc", "system-upgrade-controller registered CRD plans.upgrade.cattle.io")
        return
    if PLAN_KEY not in cluster.types().by_key:
        return
    _handle_jobs(cluster, cm)
    nodes = cm.objs("nodes")
    for plan in cm.objs(PLAN_KEY):
        if plan["metadata"].get("deletionTimestamp"):
            continue
        _sync_plan(cluster, cm, plan, nodes)


def _plan_event(cluster: Cluster, plan: dict[str, Any], etype: str, reason: str, message: str) -> None:
    cluster.event(plan, etype, reason, message, SUC_NAME)


def _sync_plan(cluster: Cluster, cm: ControllerManager, plan: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
    spec = plan.get("spec") or {}
    meta = plan["metadata"]
    ns = meta["namespace"]
    status = copy.deepcopy(plan.get("status") or {})
    if not _get_cond(status, "Complete"):
        _cond(status, "Complete", "Unknown", "")
    secrets = {s["metadata"]["name"]: s for s in cm.objs("secrets", ns)}
    # status handler: validate, resolve, digest
    problem = _validate(spec, secrets)
    valid = problem is None
    if problem:
        if _get_cond(status, "Validated").get("status") != "False":
            _plan_event(cluster, plan, "Warning", "ValidateFailed", f"Failed to validate plan: {problem}")
        _cond(status, "Validated", "False", "Error", problem)
    else:
        if _get_cond(status, "Validated").get("status") != "True":
            _plan_event(cluster, plan, "Normal", "Validated", "Plan is valid")
        _cond(status, "Validated", "True", "PlanIsValid")
    resolved = False
    if valid:
        if spec.get("version"):
            latest = munge_version(str(spec["version"]))
            if _get_cond(status, "LatestResolved").get("status") != "True" or status.get("latestVersion") != latest:
                _plan_event(cluster, plan, "Normal", "Resolved", f"Resolved latest version from Spec.Version: {latest}")
                _cond(status, "Complete", "False", "Resolved")
            status["latestVersion"] = latest
            _cond(status, "LatestResolved", "True", "Version")
            resolved = True
        elif spec.get("channel"):
            _cond(status, "LatestResolved", "False", "Error",
                  f"Failed to resolve latest version from Spec.Channel: {spec['channel']} is not reachable from kubesim")
        else:
            _cond(status, "LatestResolved", "False", "Error", "cannot resolve plan: missing channel and version")
    if status.get("latestVersion") and _get_cond(status, "LatestResolved").get("reason") != "Error":
        status["latestHash"] = latest_hash(plan, status["latestVersion"], secrets)
    if not (valid and resolved):
        _cond(status, "Complete", "False", "NotReady", "plan is not valid and resolved")
        _write_status(cm, plan, status)
        return
    # generating handler: pick nodes, make jobs
    h = status["latestHash"]
    try:
        selected = _select_nodes(plan, status, nodes)
    except ValueError as e:
        _cond(status, "Complete", "False", "SelectNodesFailed", str(e))
        _write_status(cm, plan, status)
        return
    hostnames = [(n["metadata"].get("labels") or {}).get(HOSTNAME, n["metadata"]["name"]) for n in selected]
    if hostnames:
        if (status.get("applying") or []) != hostnames:
            _plan_event(cluster, plan, "Normal", "SyncJob", f"Jobs synced for version {status['latestVersion']} "
                        f"on Nodes {','.join(hostnames)}. Hash: {h}")
            status["applying"] = hostnames
            _cond(status, "Complete", "False", "SyncJob")
    else:
        if _get_cond(status, "Complete").get("status") != "True":
            _plan_event(cluster, plan, "Normal", "Complete",
                        f"Jobs complete for version {status['latestVersion']}. Hash: {h}")
        status.pop("applying", None)
        _cond(status, "Complete", "True", "Complete")
    fresh = _write_status(cm, plan, status) or plan
    env = controller_env(cluster)
    for node in selected:
        job = job_for(fresh, node, env)
        if cluster.store.entry("jobs.batch", ns, job["metadata"]["name"]) is None:
            if cm.create("jobs.batch", job) is not None:
                cluster.log("suc", f"plan {meta['name']}: job {job['metadata']['name']} for node "
                                   f"{node['metadata']['name']}", node=node["metadata"]["name"])


def _validate(spec: dict[str, Any], secrets: dict[str, dict[str, Any]]) -> str | None:
    drain = spec.get("drain")
    if isinstance(drain, dict):
        if "deleteEmptydirData" in drain and "deleteLocalData" in drain:
            return "spec.drain cannot specify both deleteEmptydirData and deleteLocalData"
        if drain.get("podSelector") is not None:
            try:
                selector_from_match(drain["podSelector"])
            except ValueError:
                return "spec.drain.podSelector is not selectable"
    if not dig(spec, "upgrade", "image"):
        return "spec.upgrade.image is required"
    missing = [s.get("name", "") for s in spec.get("secrets") or []
               if not s.get("ignoreUpdates") and s.get("name") not in secrets]
    if missing:
        return "; ".join(f'secrets "{m}" not found' for m in missing)
    return None


def _select_nodes(plan: dict[str, Any], status: dict[str, Any], nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SelectConcurrentNodes: nodes still applying first, then candidates in SUC's stable order."""
    sel = selector_from_match(dig(plan, "spec", "nodeSelector", default={}) or {})
    label = plan_label(plan["metadata"]["name"])
    h = status.get("latestHash", "")
    applying = set(status.get("applying") or [])
    concurrency = int(dig(plan, "spec", "concurrency", default=1) or 1)
    uid = plan["metadata"]["uid"]
    eligible = []
    for n in nodes:
        labels = n["metadata"].get("labels") or {}
        if HOSTNAME not in labels or not sel(labels) or labels.get(label) in ("disabled", h):
            continue
        eligible.append(n)
    selected = [n for n in eligible if n["metadata"]["labels"][HOSTNAME] in applying]
    if len(selected) < concurrency:
        rest = sorted((n for n in eligible if n["metadata"]["labels"][HOSTNAME] not in applying),
                      key=lambda n: hashlib.sha256((n["metadata"]["uid"] + uid + h).encode()).hexdigest())
        selected += rest[: concurrency - len(selected)]
    return sorted(selected, key=lambda n: n["metadata"]["name"])


def _write_status(cm: ControllerManager, plan: dict[str, Any], status: dict[str, Any]) -> dict[str, Any] | None:
    if status == (plan.get("status") or {}):
        return plan
    fresh = cm.fresh(PLAN_KEY, plan)
    if not fresh:
        return None
    fresh["status"] = status
    return cm.update(PLAN_KEY, fresh, status=True)


def _image(spec: dict[str, Any] | None, tag: str) -> str:
    """WithLatestTag: the version is the tag only when the image names none."""
    image = (spec or {}).get("image", "")
    if "@" in image or ":" in image.rsplit("/", 1)[-1]:
        return image
    return f"{image}:{tag}"


def _container(name: str, spec: dict[str, Any], plan: dict[str, Any], image: str,
               volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status = plan.get("status") or {}
    mounts = [{"name": "host-root", "mountPath": "/host"},
              {"name": "pod-info", "mountPath": "/run/system-upgrade/pod", "readOnly": True}]
    for s in dig(plan, "spec", "secrets", default=[]) or []:
        path = s.get("path") or ""
        if not path:
            path = "/run/system-upgrade/secrets/" + s.get("name", "")
        elif not path.startswith("/"):
            path = "/run/system-upgrade/secrets/" + path
        mounts.append({"name": safe_concat_name("secret", s.get("name", "")), "mountPath": path, "readOnly": True})
    for v in volumes or []:
        mounts.append({"name": v.get("name"), "mountPath": v.get("destination")})
    env = [{"name": "SYSTEM_UPGRADE_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
           {"name": "SYSTEM_UPGRADE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "SYSTEM_UPGRADE_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
           *(spec.get("envs") or []),
           {"name": "SYSTEM_UPGRADE_PLAN_NAME", "value": plan["metadata"]["name"]},
           {"name": "SYSTEM_UPGRADE_PLAN_LATEST_HASH", "value": status.get("latestHash", "")},
           {"name": "SYSTEM_UPGRADE_PLAN_LATEST_VERSION", "value": status.get("latestVersion", "")}]
    out: dict[str, Any] = {"name": name, "image": image, "volumeMounts": mounts, "env": env}
    if spec.get("command"):
        out["command"] = list(spec["command"])
    if spec.get("args"):
        out["args"] = [str(a) for a in spec["args"]]
    if spec.get("envFrom"):
        out["envFrom"] = copy.deepcopy(spec["envFrom"])
    return out


def job_for(plan: dict[str, Any], node: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """The Job SUC creates to apply `plan` on `node` (upstream's job.New, field for field where it matters)."""
    env = env or dict(ENV_DEFAULTS)
    spec = plan.get("spec") or {}
    status = plan.get("status") or {}
    pname = plan["metadata"]["name"]
    node_name = node["metadata"]["name"]
    hostname = (node["metadata"].get("labels") or {}).get(HOSTNAME, node_name)
    version = status.get("latestVersion", "")
    h = status.get("latestHash", "")
    exclusive = "true" if spec.get("exclusive") else "false"
    labels = {LABEL_CONTROLLER: SUC_NAME, LABEL_EXCLUSIVE: exclusive, LABEL_NODE: node_name, LABEL_PLAN: pname,
              LABEL_VERSION: version, plan_label(pname): h}
    labels.update({k: v for k, v in (plan["metadata"].get("labels") or {}).items() if "cattle.io/" not in k})
    annotations = {k: v for k, v in (plan["metadata"].get("annotations") or {}).items()
                   if "cattle.io/" not in k and "kubectl.kubernetes.io/" not in k}
    kubectl = env.get("SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE") or ENV_DEFAULTS["SYSTEM_UPGRADE_JOB_KUBECTL_IMAGE"]
    upgrade_volumes = dig(spec, "upgrade", "volumes", default=[]) or []
    init: list[dict[str, Any]] = []
    if spec.get("prepare"):
        init.append(_container("prepare", spec["prepare"], plan, _image(spec["prepare"], version),
                               spec["prepare"].get("volumes")))
    drain = spec.get("drain")
    if drain is not None:
        drain = drain or {}
        selector = "!" + LABEL_CONTROLLER
        if drain.get("podSelector"):
            sel = drain["podSelector"]
            parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
            for e in sel.get("matchExpressions") or []:
                op = e.get("operator")
                if op == "Exists":
                    parts.append(e["key"])
                elif op == "DoesNotExist":
                    parts.append("!" + e["key"])
                else:
                    parts.append(f"{e['key']} {'in' if op == 'In' else 'notin'} ({','.join(e.get('values') or [])})")
            selector = ",".join([selector, *parts])
        args = ["drain", node_name, "--pod-selector", selector]
        if drain.get("ignoreDaemonSets") is None or drain.get("ignoreDaemonSets"):
            args.append("--ignore-daemonsets")
        if drain.get("deleteLocalData", True) is not False and drain.get("deleteEmptydirData", True) is not False:
            args.append("--delete-emptydir-data")
        if drain.get("force"):
            args.append("--force")
        if drain.get("timeout") is not None:
            args += ["--timeout", _go_duration(drain["timeout"])]
        if drain.get("gracePeriod") is not None:
            args += ["--grace-period", str(int(drain["gracePeriod"]))]
        if drain.get("disableEviction"):
            args.append("--disable-eviction=true")
        if drain.get("skipWaitForDeleteTimeout"):
            args += ["--skip-wait-for-delete-timeout", str(int(drain["skipWaitForDeleteTimeout"]))]
        init.append(_container("drain", {"args": args}, plan, kubectl, upgrade_volumes))
    elif spec.get("cordon"):
        init.append(_container("cordon", {"args": ["cordon", node_name]}, plan, kubectl, upgrade_volumes))
    upgrade = _container("upgrade", spec.get("upgrade") or {}, plan, _image(spec.get("upgrade"), version),
                         upgrade_volumes)
    upgrade["securityContext"] = dig(spec, "upgrade", "securityContext", default=None) or {
        "privileged": env.get("SYSTEM_UPGRADE_JOB_PRIVILEGED", "true").lower() == "true",
        "capabilities": {"add": ["CAP_SYS_BOOT"]}}
    for c in [*init, upgrade]:
        c["imagePullPolicy"] = env.get("SYSTEM_UPGRADE_JOB_IMAGE_PULL_POLICY") or "IfNotPresent"
    volumes: list[dict[str, Any]] = [
        {"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}},
        {"name": "pod-info", "downwardAPI": {"defaultMode": 420, "items": [
            {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations"}}]}}]
    for s in spec.get("secrets") or []:
        vol: dict[str, Any] = {"secretName": s.get("name"), "optional": bool(s.get("ignoreUpdates"))}
        if s.get("defaultMode") is not None:
            vol["defaultMode"] = s["defaultMode"]
        volumes.append({"name": safe_concat_name("secret", s.get("name", "")), "secret": vol})
    for v in upgrade_volumes:
        volumes.append({"name": v.get("name"), "hostPath": {"path": v.get("source")}})
    pod_spec: dict[str, Any] = {
        "hostIPC": True, "hostPID": True, "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",
        "serviceAccountName": spec.get("serviceAccountName") or "default",
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": [hostname]}]}]}},
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchExpressions": [{"key": LABEL_PLAN, "operator": "In", "values": [pname]}]},
                 "topologyKey": HOSTNAME}]}},
        "tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
                        *copy.deepcopy(spec.get("tolerations") or [])],
        "restartPolicy": "Never",
        "volumes": volumes,
        "containers": [upgrade],
    }
    if spec.get("priorityClassName"):
        pod_spec["priorityClassName"] = spec["priorityClassName"]
    if spec.get("imagePullSecrets"):
        pod_spec["imagePullSecrets"] = copy.deepcopy(spec["imagePullSecrets"])
    if init:
        pod_spec["initContainers"] = init
    ttl = int(env.get("SYSTEM_UPGRADE_JOB_TTL_SECONDS_AFTER_FINISH") or 900)
    job_spec: dict[str, Any] = {
        "backoffLimit": int(env.get("SYSTEM_UPGRADE_JOB_BACKOFF_LIMIT") or 2),
        "completions": 1, "parallelism": 1, "ttlSecondsAfterFinished": ttl,
        "template": {"metadata": {"labels": dict(labels), **({"annotations": annotations} if annotations else {})},
                     "spec": pod_spec}}
    deadline = spec.get("jobActiveDeadlineSecs")
    if deadline is None or int(deadline) < 0:
        job_spec["activeDeadlineSeconds"] = int(env.get("SYSTEM_UPGRADE_JOB_ACTIVE_DEADLINE_SECONDS") or 600)
    elif int(deadline) > 0:
        job_spec["activeDeadlineSeconds"] = int(deadline)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": safe_concat_name("apply", pname, "on", node_name.split(".", 1)[0], "with", h),
                     "namespace": plan["metadata"]["namespace"], "labels": labels,
                     "annotations": {ANN_TTL: str(ttl), **annotations}},
        "spec": job_spec,
    }


def _job_cond(job: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in dig(job, "status", "conditions", default=[]) or []
                 if c.get("type") == ctype and c.get("status") == "True"), None)


def _handle_jobs(cluster: Cluster, cm: ControllerManager) -> None:
    """SUC's job handler: label nodes of completed Jobs, report failed ones, drop stale ones."""
    for job in cm.objs("jobs.batch"):
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        if labels.get(LABEL_CONTROLLER) != SUC_NAME or meta.get("deletionTimestamp"):
            continue
        ns = meta["namespace"]
        pname, version, node_name = labels.get(LABEL_PLAN), labels.get(LABEL_VERSION), labels.get(LABEL_NODE)
        plan = cluster.store.get(PLAN_KEY, ns, pname) if pname else None
        if plan is None or version is None or node_name is None or \
                version != dig(plan, "status", "latestVersion"):
            cm.delete("jobs.batch", ns, meta["name"], policy="Background")
            continue
        node = cluster.store.get("nodes", "", node_name)
        if node is None:
            cm.delete("jobs.batch", ns, meta["name"], policy="Background")
            continue
        failed = _job_cond(job, "Failed")
        if failed:
            message = (f"Job {ns}/{meta['name']} failed on Node {node_name}: "
                       f"{failed.get('reason', '')}: {failed.get('message', '')}")
            status = copy.deepcopy(plan.get("status") or {})
            before = _get_cond(status, "Complete")
            if (before.get("reason"), before.get("message")) != ("JobFailed", message):
                _plan_event(cluster, plan, "Warning", "JobFailed", message)
                cluster.log("suc", message, node=node_name)
                _cond(status, "Complete", "False", "JobFailed", message)
                _write_status(cm, plan, status)
            continue
        if _job_cond(job, "Complete"):
            label = plan_label(pname or "")
            h = labels.get(label)
            if h is None:
                continue
            spec = plan.get("spec") or {}
            node_labels = node["metadata"].setdefault("labels", {})
            uncordon = bool(dig(node, "spec", "unschedulable")) and (bool(spec.get("cordon")) or
                                                                     spec.get("drain") is not None)
            if node_labels.get(label) == h and not uncordon:
                continue
            if node_labels.get(label) != h:
                _plan_event(cluster, plan, "Normal", "JobComplete", f"Job completed on Node {node_name}")
            node_labels[label] = h
            if uncordon:
                node["spec"].pop("unschedulable", None)
            cluster.api.update(cluster.rt("nodes"), "", node_name, node, check_rv=False)
            cluster.log("suc", f"plan {pname}: node {node_name} done", node=node_name)
            continue
        applying = dig(plan, "status", "applying", default=[]) or []
        hostname = (node["metadata"].get("labels") or {}).get(HOSTNAME, node_name)
        if hostname not in applying:  # running out of turn
            cm.delete("jobs.batch", ns, meta["name"], policy="Background")


# ---------------------------------------------------------------------- the host side: what the images do
class PodRun:
    """Progress of one upgrade pod through its containers (init containers, then the main one)."""

    def __init__(self) -> None:
        self.step = 0
        self.busy = False
        self.gone = False  # forgotten (etcd restore): its pending callbacks change nothing
        self.since = time.monotonic()
        self.next_try = 0.0


def _runs(cluster: Cluster) -> dict[str, PodRun]:
    runs = getattr(cluster, "_host_runs", None)
    if runs is None:
        runs = {}
        cluster._host_runs = runs  # type: ignore[attr-defined]
    return runs


def forget_host_runs(cluster: Cluster) -> None:
    """After an etcd restore: the pods the restored state holds start afresh, and callbacks of runs
    still busy (such as the cluster-reset that did the restore) find their pod gone and do nothing."""
    runs = getattr(cluster, "_host_runs", None)
    if runs:
        for run in runs.values():
            run.gone = True
        runs.clear()


def _same_pod(cluster: Cluster, ns: str, name: str, uid: str) -> bool:
    e = cluster.store.entry("pods", ns, name)
    return e is not None and e.obj()["metadata"].get("uid") == uid


def container_log(cluster: Cluster, pod: dict[str, Any], container: str, text: str) -> None:
    """Record what a host-run container printed; `kubectl logs` shows it (the node's kubelet keeps it)."""
    rt = cluster.nodes.get(pod["spec"].get("nodeName") or "")
    if rt is not None:
        rt.logs.append(pod["metadata"].get("uid", ""), container, text)


def image_repo(image: str) -> str:
    """`docker.io/rancher/k3s-upgrade:v1.2.3` -> `rancher/k3s-upgrade`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1])] + last[-1].split(":", 1)[0]
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def image_tag(image: str) -> str:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def is_host_pod(pod: dict[str, Any]) -> bool:
    """Pods whose containers the simulated kubelet runs step by step (SUC's Jobs)."""
    return LABEL_CONTROLLER in (pod["metadata"].get("labels") or {}) and \
        any(r.get("kind") == "Job" for r in pod["metadata"].get("ownerReferences") or [])


def host_pods(cluster: Cluster, cm: ControllerManager) -> None:
    """Run the containers of upgrade pods that kubelets have started."""
    runs = _runs(cluster)
    live: set[str] = set()
    now_m = time.monotonic()
    for pod in cm.objs("pods"):
        if not is_host_pod(pod):
            continue
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp") or dig(pod, "status", "phase") in ("Succeeded", "Failed"):
            continue
        if not dig(pod, "status", "hostIP"):
            continue
        live.add(uid)
        run = runs.setdefault(uid, PodRun())
        rt = cluster.nodes.get(pod["spec"].get("nodeName") or "")
        if run.busy or rt is None or not rt.kubelet_running:
            continue
        if run.next_try > now_m:
            cluster.wake_in(run.next_try - now_m + 0.01)
            continue
        _advance(cluster, cm, pod, rt, run)
    for uid in list(runs):
        if uid not in live and not runs[uid].busy:
            del runs[uid]


def _advance(cluster: Cluster, cm: ControllerManager, pod: dict[str, Any], rt: NodeRuntime, run: PodRun) -> None:
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    inits = pod["spec"].get("initContainers") or []
    ctrs = inits + (pod["spec"].get("containers") or [])[:1]
    while run.step < len(ctrs):
        ctr = ctrs[run.step]
        if run.step == len(inits):
            _pod_running(cluster, pod)
        outcome = _run_container(cluster, cm, pod, ctr, rt, run)
        if outcome == "wait":
            return
        if outcome == "busy":
            run.busy = True
            return
        if outcome != "done":
            _fail_pod(cluster, ns, name, ctr.get("name", ""), run.step < len(inits), outcome,
                      uid=pod["metadata"]["uid"])
            return
        if run.gone or not _same_pod(cluster, ns, name, pod["metadata"]["uid"]):
            return
        run.step += 1
        run.since = time.monotonic()
    cluster.controllers.kubelets._finish(ns, name)


def _async_done(cluster: Cluster, pod: dict[str, Any], run: PodRun,
                fail_message: str) -> Callable[..., None]:
    """The callback a 'busy' container calls when it ends: `done(ok, message="")` on the loop thread.
    The pod may be gone by then (deleted, or an etcd restore replaced the state): nothing happens."""
    ns, name, uid = pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
    inits = pod["spec"].get("initContainers") or []

    def done(ok: bool, message: str = "") -> None:
        run.busy = False
        if run.gone or not _same_pod(cluster, ns, name, uid):
            cluster.kick()
            return
        if ok:
            run.step += 1
            run.since = time.monotonic()
        else:
            ctrs = inits + (pod["spec"].get("containers") or [])[:1]
            ctr = ctrs[min(run.step, len(ctrs) - 1)]
            _fail_pod(cluster, ns, name, ctr.get("name", ""), run.step < len(inits), message or fail_message, uid=uid)
        cluster.kick()

    return done


def _run_container(cluster: Cluster, cm: ControllerManager, pod: dict[str, Any], ctr: dict[str, Any],
                   rt: NodeRuntime, run: PodRun) -> str:
    """What one container does on the machine: 'done', 'wait' (poll again), 'busy' (callback) or a failure message."""
    image = ctr.get("image", "")
    repo = image_repo(image)
    args = [str(a) for a in ctr.get("args") or []]
    if repo in KUBECTL_IMAGES:
        return _kubectl(cluster, cm, args, run)
    if repo in UPGRADE_IMAGES:
        if args[:1] == ["prepare"]:
            if len(args) < 2:
                return "prepare: the name of the plan to wait for is missing"
            other = cluster.store.get(PLAN_KEY, pod["metadata"]["namespace"], args[1]) \
                if PLAN_KEY in cluster.types().by_key else None
            if other is None or not _plan_done(other, cm):
                _retry_soon(cluster, run)
                return "wait"
            return "done"
        if rt.fail_jobs:
            return rt.fail_jobs
        try:
            target = node_version(cluster, image_tag(image))
        except ValueError:
            return f"{repo}: no Kubernetes release for tag {image_tag(image)!r}"
        if rt.version == target:
            return "done"
        begin_upgrade(cluster, rt, target, _async_done(cluster, pod, run,
                                                        f"{target} did not come up: kubelet not ready"))
        return "busy"
    if repo == NODE_CONFIG_IMAGE:
        if rt.fail_jobs:
            return rt.fail_jobs
        kargs: dict[str, str] = {}
        i = 0
        while i < len(args):
            a = args[i]
            if a.startswith("--kubelet-arg="):
                value = a.split("=", 1)[1]
            elif a == "--kubelet-arg" and i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                return f"node-config: unknown argument {a!r}"
            key, sep, val = value.partition("=")
            if not sep or not key:
                return f"node-config: --kubelet-arg wants NAME=VALUE, got {value!r}"
            if key == "max-pods" and not val.isdigit():
                return f"node-config: max-pods must be a number, got {val!r}"
            kargs[key] = val
            i += 1
        if kargs == rt.kubelet_args:
            return "done"
        restart_kubelet(cluster, rt, kargs, _async_done(cluster, pod, run, "kubelet did not restart"))
        return "busy"
    if repo == ETCD_SNAPSHOT_IMAGE:
        from .etcdsnapshot import run_container

        if rt.fail_jobs:
            return rt.fail_jobs
        return run_container(cluster, pod, ctr, rt, _async_done(cluster, pod, run, "etcd-snapshot: failed"))
    if repo in PLAIN_IMAGES:
        return "done"
    return f"kubesim does not simulate image {image!r}: the container exited with code 1"


def _kubectl(cluster: Cluster, cm: ControllerManager, args: list[str], run: PodRun) -> str:
    if len(args) < 2 or args[0] not in ("cordon", "uncordon", "drain"):
        return "done"
    node = args[1]
    if cluster.store.get("nodes", "", node) is None:
        return f'Error from server (NotFound): nodes "{node}" not found'
    if args[0] == "uncordon":
        _set_unschedulable(cluster, node, False)
        return "done"
    _set_unschedulable(cluster, node, True)
    if args[0] == "cordon":
        return "done"
    flags: dict[str, str] = {}
    i = 2
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            flags[k] = v
        elif a in ("--pod-selector", "--timeout", "--grace-period", "--skip-wait-for-delete-timeout") and i + 1 < len(args):
            flags[a[2:]] = args[i + 1]
            i += 1
        elif a.startswith("--"):
            flags[a[2:]] = "true"
        i += 1
    return _drain_step(cluster, cm, node, flags, run)


def _retry_soon(cluster: Cluster, run: PodRun) -> None:
    delay = max(0.05, min(2.0, cluster.timings.heartbeat / 4))
    run.next_try = time.monotonic() + delay
    cluster.wake_in(delay + 0.01)


def _plan_done(plan: dict[str, Any], cm: ControllerManager) -> bool:
    """What `prepare <plan>` in the upgrade images waits for: every selected node on the latest hash."""
    h = dig(plan, "status", "latestHash")
    if not h:
        return False
    sel = selector_from_match(dig(plan, "spec", "nodeSelector", default={}) or {})
    label = plan_label(plan["metadata"]["name"])
    for n in cm.objs("nodes"):
        labels = n["metadata"].get("labels") or {}
        if HOSTNAME in labels and sel(labels) and labels.get(label) not in ("disabled", h):
            return False
    return True


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


def _fail_pod(cluster: Cluster, ns: str, name: str, container: str, init: bool, message: str,
              uid: str = "") -> None:
    """The container exited 1: the pod fails with the container's termination message (its last line
    on stderr, which the pod log shows too)."""
    pod = cluster.store.get("pods", ns, name)
    if pod is None or dig(pod, "status", "phase") in ("Succeeded", "Failed") or \
            (uid and pod["metadata"].get("uid") != uid):
        return
    container_log(cluster, pod, container, message)
    now = now_iso()
    st = pod.setdefault("status", {})
    st["phase"] = "Failed"
    term = {"terminated": {"exitCode": 1, "reason": "Error", "message": message, "startedAt": now, "finishedAt": now}}
    for cs in st.get("initContainerStatuses" if init else "containerStatuses") or []:
        if cs.get("name") == container:
            cs["state"] = copy.deepcopy(term)
            cs["ready"] = False
    if init:
        reason = f"containers with incomplete status: [{container}]"
        set_condition(st, "Initialized", "False", "ContainersNotInitialized", reason, now, probe=True)
    for cs in st.get("containerStatuses") or []:
        cs["ready"] = False
        cs["started"] = False
    set_condition(st, "Ready", "False", "PodFailed", "", now, probe=True)
    set_condition(st, "ContainersReady", "False", "PodFailed", "", now, probe=True)
    cluster.api.update(cluster.rt("pods"), ns, name, pod, subresource="status", check_rv=False)
    cluster.event(pod, "Warning", "Failed", f"container {container} failed: {message}", "kubelet",
                  pod["spec"].get("nodeName", ""))
    cluster.log("suc", f"pod {ns}/{name}: container {container} failed: {message}",
                node=pod["spec"].get("nodeName", ""))


def _set_unschedulable(cluster: Cluster, node: str, value: bool) -> None:
    obj = cluster.store.get("nodes", "", node)
    if obj is None or bool(dig(obj, "spec", "unschedulable")) == value:
        return
    if value:
        obj["spec"]["unschedulable"] = True
    else:
        obj["spec"].pop("unschedulable", None)
    cluster.api.update(cluster.rt("nodes"), "", node, obj, check_rv=False)


def _drain_step(cluster: Cluster, cm: ControllerManager, node: str, flags: dict[str, str], run: PodRun) -> str:
    """One round of `kubectl drain`: evict what may go; 'done' once the node is empty."""
    timeout = parse_duration(flags["timeout"]) * cluster.time_scale if "timeout" in flags \
        else cluster.timings.drain_timeout
    ignore_ds = flags.get("ignore-daemonsets") == "true"
    force = flags.get("force") == "true"
    delete_local = flags.get("delete-emptydir-data") == "true" or flags.get("delete-local-data") == "true"
    disable_eviction = flags.get("disable-eviction") == "true"
    grace = int(flags["grace-period"]) if flags.get("grace-period", "").lstrip("-").isdigit() else -1
    select = parse_label_selector(flags.get("pod-selector")) or (lambda _labels: True)
    remaining = 0
    for p in cm.objs("pods"):
        if dig(p, "spec", "nodeName") != node or dig(p, "status", "phase") in ("Succeeded", "Failed"):
            continue
        if not select(p["metadata"].get("labels") or {}):
            continue
        owners = [r for r in p["metadata"].get("ownerReferences") or [] if r.get("controller")]
        pname = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        if any(r.get("kind") == "DaemonSet" for r in owners):
            if ignore_ds:
                continue
            return f"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets): {pname}"
        if (p["metadata"].get("annotations") or {}).get("kubernetes.io/config.mirror"):
            continue
        if not owners and not force:
            return ("cannot delete Pods that declare no controller (use --force to override): " + pname)
        if any("emptyDir" in v for v in dig(p, "spec", "volumes", default=[]) or []) and not delete_local:
            return f"cannot delete Pods with local storage (use --delete-emptydir-data to override): {pname}"
        remaining += 1
        if p["metadata"].get("deletionTimestamp"):
            continue
        opts: dict[str, Any] = {"gracePeriodSeconds": grace} if grace >= 0 else {}
        try:
            if disable_eviction:
                cluster.api.delete(cluster.rt("pods"), p["metadata"]["namespace"], p["metadata"]["name"], opts)
            else:
                cluster.evict(p["metadata"]["namespace"], p["metadata"]["name"],
                              {"deleteOptions": opts} if opts else {})
            cluster.log("suc", f"drain {node}: evicted pod {pname}", node=node)
        except errors.ApiError as e:
            if e.code == 429:
                cluster.log("suc", f"drain {node}: eviction of {pname} refused: {e.message}", node=node)
    if remaining == 0:
        return "done"
    if timeout and time.monotonic() - run.since > timeout:
        return f"error: unable to drain node {node}: timed out waiting for the condition"
    _retry_soon(cluster, run)
    return "wait"

