"""kube-bench and the control plane's static pods, as far as a CIS scan can see them.

**API-server flags.** Each control-plane node runs kube-apiserver as a static pod: the kubelet
shows it as the mirror pod ``kube-system/kube-apiserver-<node>`` (annotations
``kubernetes.io/config.mirror`` / ``config.source: file``, label ``component: kube-apiserver``,
owned by its Node) whose container ``command`` holds the flags. The manifest is rendered from
the ConfigMap ``kube-system/kubeadm-config`` (``data.ClusterConfiguration``, a kubeadm
``ClusterConfiguration`` whose ``apiServer.extraArgs`` are laid over the distribution's
defaults; a value of ``null`` removes a default), as ``kubeadm upgrade node`` re-renders the
manifests on each control-plane node. Editing that ConfigMap through the API changes the
flags: the kubelet replaces the mirror pod (deleted, then created with the new command).

**kube-bench.** A pod whose container runs ``aquasec/kube-bench`` (any registry, any tag) is
answered as kube-bench would answer on its node: ``kube-bench run --targets T --benchmark B
--json [--nototals]`` evaluates the checks of benchmark B (``cis-1.8``, ``k3s-cis-1.8``,
``rke2-cis-1.8``, ``rke-cis-1.4``; see ``kubebench_checks.json``) against what the node runs:
the API server's flags above, the kubelet's arguments (``NodeRuntime.kubelet_args`` over the
defaults), fixed flags for the controller manager, scheduler and etcd, and the modes and owners
of the files kube-bench stats. The JSON document (``{"Controls": [...], "Totals": {...}}``, or
the bare list of controls with ``--nototals``) is the container's log
(the node's container log, ``GET .../pods/NAME/log``); the pod then succeeds as any Job pod. An unknown benchmark or
target makes the container print kube-bench's error and exit 1.

**Failures.** A node whose ``fail_kube_bench`` is set (fleet file, or ``Fleet.fail_node_kube_bench``)
runs a kube-bench that cannot do its work there: with a message it prints that message as kube-bench
prints its fatal errors (to stderr, after an empty line) and exits 1; ``true`` is kube-bench's own
error when it sees none of the programs it checks (``failed to get a set of executables needed for
tests: unable to detect running programs for component "apiserver"``, as when the pod does not share
the host's PID namespace); ``{output: TEXT, exit_code: N}`` prints TEXT instead of the JSON report and
exits N (0 by default), like a kube-bench that writes its text report or a log cut short. The rest of
the node, and kube-bench on other nodes, are untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from typing import TYPE_CHECKING, Any

import yaml

from ..resources import parse_version
from ..util import dig

if TYPE_CHECKING:
    from ..cluster import Cluster, NodeRuntime
    from . import ControllerManager

IMAGE = "aquasec/kube-bench"
CONFIG_NS, CONFIG_NAME = "kube-system", "kubeadm-config"
MIRROR = "kubernetes.io/config.mirror"
CONTROL_PLANE_ROLES = {"controlplane", "master", "server"}
TARGET_CONTROLS = {
    "master": ("1", "Control Plane Security Configuration"),
    "etcd": ("2", "Etcd Node Configuration"),
    "controlplane": ("3", "Control Plane Configuration"),
    "node": ("4", "Worker Node Security Configuration"),
}

#: ``fail_kube_bench: true``: kube-bench's fatal error when the programs it checks are not running (as it sees them).
NO_PROGRAMS = "failed to get a set of executables needed for tests"
TARGET_PROGRAMS = {"master": "apiserver", "controlplane": "apiserver", "etcd": "etcd", "node": "kubelet",
                   "policies": "kubectl"}

_checks: dict[str, Any] | None = None


def benchmarks() -> dict[str, Any]:
    global _checks
    if _checks is None:
        with open(os.path.join(os.path.dirname(__file__), "kubebench_checks.json")) as fh:
            _checks = json.load(fh)
    return _checks


# ---------------------------------------------------------------------- what the nodes run
def apiserver_defaults(kind: str, minor: int) -> dict[str, str | None]:
    """The flags a freshly installed API server of this distribution starts with."""
    pki = "/var/lib/rancher/k3s/server/tls" if kind == "k3s" else "/etc/kubernetes/ssl"
    flags: dict[str, str | None] = {
        "advertise-address": "", "allow-privileged": "true", "anonymous-auth": "false",
        "authorization-mode": "Node,RBAC", "bind-address": "0.0.0.0",
        "client-ca-file": f"{pki}/kube-ca.pem", "enable-admission-plugins": "NodeRestriction",
        "etcd-cafile": f"{pki}/kube-ca.pem", "etcd-certfile": f"{pki}/kube-node.pem",
        "etcd-keyfile": f"{pki}/kube-node-key.pem", "kubelet-client-certificate": f"{pki}/kube-apiserver.pem",
        "kubelet-client-key": f"{pki}/kube-apiserver-key.pem", "secure-port": "6443",
        "service-account-key-file": f"{pki}/kube-service-account-token-key.pem",
        "service-account-lookup": "true", "service-cluster-ip-range": "10.43.0.0/16",
        "tls-cert-file": f"{pki}/kube-apiserver.pem", "tls-private-key-file": f"{pki}/kube-apiserver-key.pem",
    }
    if minor < 24:
        flags["insecure-port"] = "0"
    if minor < 25 and kind == "rke":
        flags["enable-admission-plugins"] = "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass," \
                                            "DefaultTolerationSeconds,MutatingAdmissionWebhook," \
                                            "ValidatingAdmissionWebhook,ResourceQuota,NodeRestriction"
    return flags


def kubeadm_config(kind: str, version: str, extra_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ConfigMap the API server's static pod manifests are rendered from (created at bootstrap)."""
    doc = {"apiVersion": "kubeadm.k8s.io/v1beta3", "kind": "ClusterConfiguration", "kubernetesVersion": version,
           "clusterName": "kubernetes", "apiServer": {"extraArgs": dict(extra_args or {})}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_NAME, "namespace": CONFIG_NS},
            "data": {"ClusterConfiguration": yaml.safe_dump(doc, sort_keys=False)}}


def extra_args(cluster: Cluster) -> dict[str, Any]:
    cm = cluster.store.get("configmaps", CONFIG_NS, CONFIG_NAME)
    try:
        doc = yaml.safe_load(dig(cm or {}, "data", "ClusterConfiguration", default="") or "") or {}
    except yaml.YAMLError:
        return {}
    args = dig(doc, "apiServer", "extraArgs", default={}) if isinstance(doc, dict) else {}
    if isinstance(args, list):  # kubeadm v1beta4: [{name, value}]
        args = {a.get("name"): a.get("value") for a in args if isinstance(a, dict) and a.get("name")}
    return args if isinstance(args, dict) else {}


def apiserver_flags(cluster: Cluster) -> dict[str, str]:
    flags = apiserver_defaults(cluster.kind, cluster.minor)
    for key, value in extra_args(cluster).items():
        flags[str(key).lstrip("-")] = None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return {k: v for k, v in flags.items() if v is not None}


def kubelet_flags(cluster: Cluster, rt: NodeRuntime) -> dict[str, str]:
    flags = {"anonymous-auth": "false", "authorization-mode": "Webhook", "client-ca-file": "/etc/kubernetes/ssl/kube-ca.pem",
             "read-only-port": "0", "streaming-connection-idle-timeout": "30m", "make-iptables-util-chains": "true",
             "event-qps": "0", "rotate-certificates": "true", "tls-cert-file": "/etc/kubernetes/ssl/kube-kubelet.pem",
             "tls-private-key-file": "/etc/kubernetes/ssl/kube-kubelet-key.pem"}
    if cluster.kind in ("rke", "k3s"):
        flags["hostname-override"] = rt.name
    flags.update({str(k).lstrip("-"): str(v) for k, v in rt.kubelet_args.items()})
    return flags


FIXED_FLAGS = {
    "controllermanager": {"profiling": "false", "use-service-account-credentials": "true", "bind-address": "127.0.0.1",
                          "service-account-private-key-file": "/etc/kubernetes/ssl/kube-service-account-token-key.pem",
                          "root-ca-file": "/etc/kubernetes/ssl/kube-ca.pem", "terminated-pod-gc-threshold": "1000",
                          "feature-gates": "RotateKubeletServerCertificate=true", "address": "127.0.0.1"},
    "scheduler": {"profiling": "false", "bind-address": "127.0.0.1", "address": "127.0.0.1"},
    "etcd": {"cert-file": "/etc/kubernetes/ssl/kube-etcd.pem", "key-file": "/etc/kubernetes/ssl/kube-etcd-key.pem",
             "client-cert-auth": "true", "peer-cert-file": "/etc/kubernetes/ssl/kube-etcd.pem",
             "peer-key-file": "/etc/kubernetes/ssl/kube-etcd-key.pem", "peer-client-cert-auth": "true",
             "trusted-ca-file": "/etc/kubernetes/ssl/kube-etcd-ca.pem"},
}


def file_state(cluster: Cluster, text: str) -> tuple[str, str]:
    """(mode, owner) of the file a check stats: installers leave 600 root:root, with these exceptions."""
    low = text.lower()
    if "etcd data directory" in low:
        return "700", "etcd:etcd" if cluster.kind not in ("rke", "k3s") else "root:root"
    if "container network interface" in low:
        return "644", "root:root"
    return "600", "root:root"


# ---------------------------------------------------------------------- evaluating one check
def _listed(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _compare(op: str, actual: str, want: str) -> bool:
    if op == "eq":
        return actual.lower() == want.lower()
    if op == "noteq":
        return actual.lower() != want.lower()
    if op in ("gt", "gte", "lt", "lte"):
        try:
            a, w = float(actual), float(want)
        except ValueError:
            return False
        return {"gt": a > w, "gte": a >= w, "lt": a < w, "lte": a <= w}[op]
    if op == "has":
        return want in _listed(actual) or want == actual
    if op == "nothave":
        return want not in _listed(actual)
    if op == "valid_elements":
        return bool(actual) and set(_listed(actual)) <= set(_listed(want))
    if op == "bitmask":
        return int(actual, 8) & ~int(want, 8) == 0
    return False


def _item(item: dict[str, Any], flags: dict[str, str], mode: str, owner: str, encryption: bool) -> tuple[bool, str]:
    """Whether one test item holds, and the value kube-bench saw."""
    flag = str(item.get("flag") or "")
    op, want, must = item.get("op"), str(item.get("value", "")), item.get("set")
    if flag.startswith("--"):
        name = flag[2:]
        if name not in flags:
            return must is False and not op, ""
        actual = flags[name]
        if must is False and not op:
            return False, actual
        return (_compare(op, actual, want) if op else True), actual
    if flag == "permissions" or (op == "eq" and flag.isdigit()):
        return (_compare("bitmask", mode, want) if op == "bitmask" else mode == flag), mode
    if ":" in flag:
        return owner == flag, owner
    if flag == "provider":
        return encryption, "aescbc" if encryption else ""
    if flag == "true":
        return (encryption if item.get("_encryption") else True), "true"
    if flag == "RotateKubeletServerCertificate":
        gates = dict(g.split("=", 1) for g in _listed(flags.get("feature-gates", "")) if "=" in g)
        actual = gates.get(flag, "")
        if not actual:
            return must is False or op == "nothave", ""
        return (_compare(op, actual, want) if op else True), actual
    return True, ""


def evaluate(check: dict[str, Any], flags: dict[str, dict[str, str]], mode: str, owner: str,
             encryption: bool) -> dict[str, Any]:
    """One result as kube-bench prints it."""
    test = check.get("test") or {}
    comp = test.get("component", "")
    items = test.get("items") or []
    ctype = check.get("type") or ""
    result = {"test_number": check["id"], "test_desc": check["text"], "audit": f"/bin/ps -fC {comp or 'stat'}",
              "AuditEnv": "", "AuditConfig": "", "type": ctype, "remediation": "See the CIS Kubernetes Benchmark.",
              "test_info": ["See the CIS Kubernetes Benchmark."], "status": "", "actual_value": "",
              "scored": bool(check.get("scored")), "IsMultiple": False, "expected_result": "", "reason": ""}
    if ctype == "skip":
        result.update(status="INFO", reason="Test marked as skip")
        return result
    if ctype == "manual" or not items:
        result.update(status="WARN", reason="Test marked as a manual test")
        return result
    comp_flags = flags.get(comp, {})
    outcomes = []
    for item in items:
        special = dict(item)
        if check["id"] in ("1.1.35",):
            special["_encryption"] = True
        outcomes.append(_item(special, comp_flags, mode, owner, encryption))
    ok = any(o[0] for o in outcomes) if test.get("bin_op") == "or" else all(o[0] for o in outcomes)
    result["actual_value"] = next((o[1] for o in outcomes if o[1]), "")
    result["expected_result"] = " or ".join(
        f"'{i.get('flag')}' {('is ' + str(i.get('op')) + ' ' + str(i.get('value'))) if i.get('op') else ('is present' if i.get('set') is not False else 'is not present')}"
        for i in items)
    if ok:
        result["status"] = "PASS"
    else:
        result["status"] = "FAIL" if result["scored"] else "WARN"
    return result


def run_kube_bench(cluster: Cluster, rt: NodeRuntime, argv: list[str]) -> tuple[int, str]:
    """(exit code, output) of ``kube-bench`` with these arguments on node ``rt``."""
    args = [a for a in argv if a not in ("kube-bench",)]
    opts: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--") and "=" in a:
            key, value = a[2:].split("=", 1)
            opts[key] = value
        elif a in ("--targets", "--benchmark", "--version", "--config-dir", "--outputfile") and i + 1 < len(args):
            opts[a[2:]] = args[i + 1]
            i += 1
        elif a.startswith("--"):
            opts[a[2:]] = "true"
        i += 1
    name = opts.get("benchmark") or "cis-1.8"
    bench = benchmarks().get(name)
    if bench is None:
        return 1, f"error validating targets: unknown benchmark {name!r}\n"
    targets = _listed(opts.get("targets") or ",".join(t for t in TARGET_CONTROLS if t in bench))
    unknown = [t for t in targets if t not in TARGET_CONTROLS and t != "policies"]
    if unknown:
        return 1, f"error validating targets: {', '.join(unknown)} is not a valid target for {name}\n"
    if rt.fail_kube_bench:
        return _failure(rt, targets)
    api = apiserver_flags(cluster)
    flags = {"apiserver": api, "kubelet": kubelet_flags(cluster, rt), **FIXED_FLAGS}
    encryption = "encryption-provider-config" in api
    major, minor, _, _ = parse_version(cluster.version)
    controls = []
    totals = {"total_pass": 0, "total_fail": 0, "total_warn": 0, "total_info": 0}
    for target in targets:
        if target not in bench:
            continue
        cid, text = TARGET_CONTROLS[target]
        groups = []
        sums = {"total_pass": 0, "total_fail": 0, "total_warn": 0, "total_info": 0}
        for section in sorted(bench[target]["groups"], key=lambda s: [int(p) for p in s.split(".")]):
            g = bench[target]["groups"][section]
            results = []
            for check in g["checks"]:
                mode, owner = file_state(cluster, check["text"])
                results.append(evaluate(check, flags, mode, owner, encryption))
            counts = {s: sum(1 for r in results if r["status"] == s.upper()) for s in ("pass", "fail", "warn", "info")}
            groups.append({"section": section, "type": "", **counts, "desc": g.get("text") or "", "results": results})
            for s, n in counts.items():
                sums[f"total_{s}"] += n
        controls.append({"id": cid, "version": name, "detected_version": f"{major}.{minor}", "text": text,
                         "node_type": target, "tests": groups, **sums})
        for k, n in sums.items():
            totals[k] += n
    if opts.get("nototals") == "true":
        return 0, json.dumps(controls) + "\n"
    return 0, json.dumps({"Controls": controls, "Totals": totals}) + "\n"


def _failure(rt: NodeRuntime, targets: list[str]) -> tuple[int, str]:
    """What a kube-bench that cannot work on this node prints (``fail_kube_bench``), and its exit code."""
    message, code = rt.fail_kube_bench, rt.fail_kube_bench_exit
    if message == NO_PROGRAMS:
        program = TARGET_PROGRAMS.get(targets[0] if targets else "node", "kubelet")
        message = f'{NO_PROGRAMS}: unable to detect running programs for component "{program}"'
    if code == 0:
        return 0, message if message.endswith("\n") else message + "\n"
    return code, f"\n{message}\n"  # exitWithError: fmt.Fprintf(os.Stderr, "\n%v\n", err); os.Exit(1)


# ---------------------------------------------------------------------- controllers
def _is_kube_bench(ctr: dict[str, Any]) -> bool:
    from .upgrades import image_repo

    return image_repo(str(ctr.get("image") or "")) == IMAGE


def kube_bench_pods(cluster: Cluster, cm: ControllerManager) -> None:
    """Run kube-bench in pods the kubelet has started; its JSON becomes the container's log."""
    for pod in cm.objs("pods"):
        meta = pod["metadata"]
        ctrs = dig(pod, "spec", "containers", default=[]) or []
        if not ctrs or not _is_kube_bench(ctrs[0]) or dig(pod, "status", "phase") != "Running":
            continue
        rt = cluster.nodes.get(dig(pod, "spec", "nodeName", default="") or "")
        container = ctrs[0].get("name", "")
        if rt is None or rt.logs.lines(meta["uid"], container) is not None:
            continue
        argv = [str(a) for a in (ctrs[0].get("command") or []) + (ctrs[0].get("args") or [])]
        if len(argv) == 1 and " " in argv[0]:
            argv = shlex.split(argv[0])
        code, out = run_kube_bench(cluster, rt, argv)
        rt.logs.append(meta["uid"], container, out)
        cluster.log("kube-bench", f"pod {meta['namespace']}/{meta['name']} on {rt.name}: "
                                  f"kube-bench {' '.join(argv[1:])} exited {code}", node=rt.name)
        if code:
            cluster.controllers.kubelets._finish(meta["namespace"], meta["name"], exit_code=code)


def _mirror_pod(cluster: Cluster, node: dict[str, Any], command: list[str], digest: str) -> dict[str, Any]:
    name = node["metadata"]["name"]
    version = cluster.version.split("+", 1)[0]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"kube-apiserver-{name}", "namespace": "kube-system",
                         "labels": {"component": "kube-apiserver", "tier": "control-plane"},
                         "annotations": {MIRROR: digest, "kubernetes.io/config.hash": digest,
                                         "kubernetes.io/config.source": "file"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                              "uid": node["metadata"]["uid"], "controller": True}]},
            "spec": {"nodeName": name, "hostNetwork": True, "priorityClassName": "system-node-critical",
                     "priority": 2000001000,
                     "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
                     "containers": [{"name": "kube-apiserver", "image": f"registry.k8s.io/kube-apiserver:{version}",
                                     "command": command}]}}


def static_pods(cluster: Cluster, cm: ControllerManager) -> None:
    """Keep each control-plane node's kube-apiserver mirror pod in step with its rendered manifest."""
    command = ["kube-apiserver", *(f"--{k}={v}" for k, v in sorted(apiserver_flags(cluster).items()))]
    digest = hashlib.sha256(json.dumps(command).encode()).hexdigest()[:32]
    pods = {p["metadata"]["name"]: p for p in cm.objs("pods", "kube-system")
            if (p["metadata"].get("labels") or {}).get("component") == "kube-apiserver"}
    for node in cm.objs("nodes"):
        name = node["metadata"]["name"]
        rt = cluster.nodes.get(name)
        if rt is None or not rt.kubelet_running or not CONTROL_PLANE_ROLES & set(rt.roles):
            continue
        pod = pods.get(f"kube-apiserver-{name}")
        if pod is None:
            cm.create("pods", _mirror_pod(cluster, node, command, digest))
        elif (pod["metadata"].get("annotations") or {}).get(MIRROR) != digest and \
                not pod["metadata"].get("deletionTimestamp"):
            cm.delete("pods", "kube-system", pod["metadata"]["name"], grace=0)
