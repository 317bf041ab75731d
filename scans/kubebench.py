"""Node checks (sections 1–4) from kube-bench, run on the cluster as real clusters run it.

One Job per node role (control plane, etcd, worker; a node holding several roles runs their
targets in one Job) on one Ready node of that role: ``hostPID``, the host paths kube-bench reads
mounted read-only, image ``aquasec/kube-bench`` at the version the benchmark file pins,
``kube-bench run --targets ... --benchmark ... --json``. The JSON is read from the pod's log and
parsed here; both shapes kube-bench has printed are accepted: ``{"Controls": [...], "Totals":
{...}}`` and the bare list of controls (older versions, or ``--nototals``).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from clusters import kube
from clusters.nodeops.api import ClusterApi

NAMESPACE = "corral-cis"
STATUS = {"PASS": "pass", "FAIL": "fail", "WARN": "warn", "INFO": "na"}
HOST_PATHS = ["/var/lib/etcd", "/var/lib/kubelet", "/var/lib/kube-scheduler", "/var/lib/kube-controller-manager",
              "/etc/systemd", "/lib/systemd", "/srv/kubernetes", "/etc/kubernetes", "/usr/bin", "/etc/cni/net.d",
              "/opt/cni/bin", "/var/lib/cni", "/var/lib/rancher", "/etc/rancher"]
ROLE_ORDER = ("controlplane", "etcd", "worker")


class IngestError(ValueError):
    """kube-bench's output is not a document Corral can read."""


@dataclass
class NodeRun:
    """kube-bench on one node: its targets, what it printed, and the results by check id."""

    role: str
    node: str
    targets: list[str]
    job: str = ""
    raw: str = ""
    error: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


# ---------------------------------------------------------------------- ingest
def parse_output(text: str) -> list[dict[str, Any]]:
    """The controls of kube-bench's ``--json`` output, in either shape it has had."""
    text = (text or "").strip()
    if not text:
        raise IngestError("kube-bench printed nothing")
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start < 0:
        raise IngestError(f"kube-bench printed no JSON: {text[:200]}")
    try:
        doc = json.loads(text[start:])
    except ValueError as exc:
        raise IngestError(f"kube-bench's output is not valid JSON ({exc})") from None
    if isinstance(doc, dict):
        if "Controls" not in doc:
            raise IngestError('kube-bench\'s JSON document has no "Controls"')
        doc = doc["Controls"]
    if not isinstance(doc, list) or not all(isinstance(c, dict) for c in doc):
        raise IngestError("kube-bench's controls are not a list of objects")
    return doc


def results_by_check(controls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each check's result: our status (pass/fail/warn/na), kube-bench's own, and the evidence it printed."""
    out: dict[str, dict[str, Any]] = {}
    for control in controls:
        for group in control.get("tests") or []:
            for result in group.get("results") or []:
                check_id = str(result.get("test_number") or "").strip()
                status = str(result.get("status") or "").upper()
                if not check_id:
                    continue
                out[check_id] = {
                    "status": STATUS.get(status, "error"),
                    "kube_bench_status": status or "(none)",
                    "node_type": control.get("node_type", ""),
                    "actual_value": str(result.get("actual_value") or "")[:2000],
                    "expected_result": str(result.get("expected_result") or "")[:500],
                    "reason": str(result.get("reason") or "")[:500],
                    "audit": str(result.get("audit") or "")[:500],
                    "scored": result.get("scored"),
                }
    return out


# ---------------------------------------------------------------------- which nodes, which targets
def plan_runs(nodes: dict[str, dict[str, Any]], node_types: set[str], distribution: str) -> list[NodeRun]:
    """One Ready node per role, and the kube-bench targets to run there (only those the benchmark has)."""
    ready = {name: n for name, n in sorted(nodes.items()) if _ready(n)}
    etcd_nodes = any("etcd" in kube.node_roles(n) for n in ready.values())

    def targets_for(roles: set[str]) -> list[str]:
        wanted = []
        if "controlplane" in roles:
            wanted += ["master", "controlplane"]
            if distribution in ("k3s", "rke2"):
                wanted += ["etcd", "node"]  # servers run the embedded etcd and a kubelet
            elif not etcd_nodes:
                wanted.append("etcd")  # kubeadm-style: etcd runs as a static pod on the control plane
        if "etcd" in roles:
            wanted.append("etcd")
        if "worker" in roles:
            wanted.append("node")
        return [t for t in dict.fromkeys(wanted) if t in node_types]

    runs: list[NodeRun] = []
    used: set[str] = set()
    for role in ROLE_ORDER:
        for name, node in ready.items():
            roles = set(kube.node_roles(node))
            if role not in roles:
                continue
            if name not in used:
                targets = targets_for(roles)
                if targets:
                    runs.append(NodeRun(role=role, node=name, targets=targets))
                    used.add(name)
            break
    return runs


def _ready(node: dict[str, Any]) -> bool:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def job_manifest(name: str, run: NodeRun, benchmark: str, image: str, labels: dict[str, str]) -> dict[str, Any]:
    volumes = [{"name": f"host-{i}", "hostPath": {"path": p}} for i, p in enumerate(HOST_PATHS)]
    mounts = [{"name": f"host-{i}", "mountPath": "/usr/local/mount-from-host/bin" if p == "/usr/bin" else p,
               "readOnly": True} for i, p in enumerate(HOST_PATHS)]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(labels)},
        "spec": {
            "backoffLimit": 0, "activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {**labels, "app": "kube-bench"}},
                "spec": {
                    "hostPID": True, "restartPolicy": "Never",
                    "nodeSelector": {"kubernetes.io/hostname": run.node},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{
                        "name": "kube-bench", "image": image,
                        "command": ["kube-bench", "run", "--targets", ",".join(run.targets),
                                    "--benchmark", benchmark, "--json"],
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


# ---------------------------------------------------------------------- running the Jobs
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def run_on_cluster(api: ClusterApi, *, scan_id: int, benchmark: str, image: str, node_types: set[str],
                   distribution: str, timeout: float = 600.0, poll: float = 0.25, reporter=None) -> list[NodeRun]:
    """Start one kube-bench Job per node role, wait for them, read and parse their logs, delete the Jobs."""
    nodes = api.nodes()
    runs = plan_runs(nodes, node_types, distribution)
    if api.exists(f"/api/v1/namespaces/{NAMESPACE}") is None:
        try:
            api.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": NAMESPACE}})
        except kube.ClusterError as exc:
            if exc.status != 409:
                raise
    labels = {"app.kubernetes.io/managed-by": "corral", "scans.corral.io/scan": str(scan_id)}
    jobs_path = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"
    for run in runs:
        run.job = _slug(f"kube-bench-{scan_id}-{run.role}")[:63]
        api.request("POST", jobs_path, job_manifest(run.job, run, benchmark, image, labels))
        if reporter:
            reporter.log(f"kube-bench Job {run.job} on {run.node} ({run.role}): targets {', '.join(run.targets)}")
    deadline = time.monotonic() + timeout
    pending = {r.job: r for r in runs}
    try:
        while pending:
            for name, run in list(pending.items()):
                job = api.exists(f"{jobs_path}/{name}") or {}
                conds = {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or []
                         if c.get("status") == "True"}
                if "Complete" in conds or "Failed" in conds:
                    _collect(api, run, failed="Failed" in conds, why=conds.get("Failed", {}).get("message", ""))
                    del pending[name]
                    if reporter:
                        reporter.log(f"kube-bench on {run.node}: " + (run.error or f"{len(run.results)} checks read"),
                                     "warning" if run.error else "info")
            if pending and time.monotonic() > deadline:
                for run in pending.values():
                    run.error = f"kube-bench did not finish on {run.node} within {int(timeout)} s"
                break
            if pending:
                time.sleep(poll)
                if reporter:
                    reporter.checkpoint()
    finally:
        for run in runs:
            try:
                api.request("DELETE", f"{jobs_path}/{run.job}", {"propagationPolicy": "Background"})
            except kube.ClusterError:
                pass
    return runs


def _collect(api: ClusterApi, run: NodeRun, *, failed: bool, why: str) -> None:
    pods = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods", query={"labelSelector": f"job-name={run.job}"})
    items = pods.get("items") or []
    if not items:
        run.error = f"kube-bench's pod on {run.node} is gone; nothing to read" + (f" ({why})" if why else "")
        return
    pod = items[-1]["metadata"]["name"]
    try:
        response = api._call(api.core.read_namespaced_pod_log, pod, NAMESPACE, container="kube-bench",
                             _preload_content=False)
        run.raw = response.data.decode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001 - an unreadable log is an error of those checks, in words
        run.error = f"the log of kube-bench's pod on {run.node} could not be read: {kube.explain(exc).reason}"
        return
    if failed:
        run.error = f"kube-bench failed on {run.node}: {(run.raw.strip() or why)[:300]}"
        return
    try:
        run.results = results_by_check(parse_output(run.raw))
    except IngestError as exc:
        run.error = f"kube-bench on {run.node}: {exc}"
