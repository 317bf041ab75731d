"""Running the corral/etcd-snapshot image on etcd nodes through system-upgrade-controller Plans.

One ``EtcdNodes`` per job: it finds the etcd nodes, installs the ETCDSnapshotFile CRD where the
cluster does not serve it, and runs one Plan at a time (save, verify, cluster-reset, rejoin,
delete — see README.md), with the snapshot's settings in a Secret mounted at ``/corral``. A step
ends when every chosen node's SUC Job completed; a Failed Job ends it with the Job's reason.
"""
from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from clusters import kube
from clusters.models import Cluster
from clusters.nodeops import ClusterApi, NodeOps, hostname_selector, plan_body
from clusters.nodeops.plans import JOB_NODE, JOB_PLAN, NAMESPACE, Operation, hostname, is_ready, job_failure
from clusters.nodeops.suc import collection_path, crd_v1beta1

IMAGE = "corral/etcd-snapshot"
OPERATION = "etcd-snapshot"
SECRET_PATH = "/corral"
CRD_NAME = "etcdsnapshotfiles.k3s.cattle.io"
SNAPSHOT_FILES = "/apis/k3s.cattle.io/v1/etcdsnapshotfiles"
CRD_MANIFEST = Path(__file__).with_name("manifests") / "etcdsnapshotfile-crd.yaml"
DISTRIBUTIONS = {Cluster.Kind.RKE: "rke2", Cluster.Kind.K3S: "k3s"}
ETCD_ROLE_LABELS = ("node-role.kubernetes.io/etcd",)
SERVER_ROLE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
POLL = 0.25


class StepFailed(Exception):
    """A step on the nodes failed; the message is the reason in words (the Job's, or what was missing)."""


def image_version() -> str:
    return getattr(settings, "ETCD_SNAPSHOT_IMAGE_VERSION", "v0.1.0")


@cache
def crd_manifest() -> dict[str, Any]:
    return yaml.safe_load(CRD_MANIFEST.read_text())


def is_etcd_node(node: dict[str, Any], kind: str) -> bool:
    """rke: nodes labelled etcd; k3s: server nodes (embedded etcd runs on every server)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) == "true" for k in ETCD_ROLE_LABELS):
        return True
    return kind == Cluster.Kind.K3S and any(labels.get(k) == "true" for k in SERVER_ROLE_LABELS)


@dataclass
class Step:
    """One Plan run: its name, what it runs and where."""

    plan: str
    args: list[str]
    nodes: list[str]
    secret: dict[str, str]


class EtcdNodes:
    """The etcd side of one cluster, for one job."""

    def __init__(self, cluster: Cluster, api: ClusterApi, *, log: Callable[..., None],
                 checkpoint: Callable[[], None] | None = None):
        self.cluster = cluster
        self.api = api
        self.log = log
        self.checkpoint = checkpoint or (lambda: None)
        self.ops = NodeOps(api, log=log)
        self.distribution = DISTRIBUTIONS.get(cluster.kind, "rke2")

    # ------------------------------------------------------------------ what the cluster is
    def identity(self) -> str:
        """The kube-system namespace uid: what a snapshot is checked against before a restore."""
        from backups.resources import BackupError, cluster_identity

        try:
            return cluster_identity(self.api)
        except BackupError as exc:
            raise StepFailed(str(exc)) from None

    def etcd_nodes(self, *, ready_only: bool = True) -> list[dict[str, Any]]:
        nodes = [n for n in self.api.nodes().values() if is_etcd_node(n, self.cluster.kind)]
        if ready_only:
            nodes = [n for n in nodes if is_ready(n)]
        return sorted(nodes, key=hostname)

    def ensure_records(self) -> None:
        """Serve ETCDSnapshotFile where the cluster does not yet (RKE2/k3s before 1.26, other kinds)."""
        if self.api.exists(SNAPSHOT_FILES) is not None:
            return
        group = self.api.exists("/apis/apiextensions.k8s.io") or {}
        served = {v.get("version") for v in group.get("versions") or []}
        crd = copy.deepcopy(crd_manifest())
        if served and "v1" not in served:
            crd = crd_v1beta1(crd)
        try:
            self.api.request("POST", collection_path(crd), crd, query={"fieldManager": "corral"})
            self.log(f"Created CustomResourceDefinition {CRD_NAME} (snapshots are recorded as ETCDSnapshotFile)")
        except kube.ClusterError as exc:
            if exc.status != 409:
                raise StepFailed(f"could not create CustomResourceDefinition {CRD_NAME}: {exc.reason}") from None
        deadline = time.monotonic() + 30
        while self.api.exists(SNAPSHOT_FILES) is None:
            if time.monotonic() > deadline:
                raise StepFailed(f"{CRD_NAME} was created but is not served after 30 s")
            time.sleep(POLL)

    def snapshot_files(self) -> list[dict[str, Any]]:
        return (self.api.exists(SNAPSHOT_FILES) or {}).get("items") or []

    def put_snapshot_file(self, body: dict[str, Any]) -> None:
        """Record an ETCDSnapshotFile again (after a restore brought back an etcd that predates it)."""
        body = {k: v for k, v in body.items() if k != "status"}
        body["metadata"] = {k: v for k, v in body["metadata"].items()
                            if k in ("name", "labels", "annotations")}
        try:
            created = self.api.request("POST", SNAPSHOT_FILES, body)
        except kube.ClusterError as exc:
            if exc.status == 409:
                return
            raise
        status = (body.get("status") or {})
        if status:
            created["status"] = status
            try:
                self.api.request("PUT", f"{SNAPSHOT_FILES}/{created['metadata']['name']}/status", created)
            except kube.ClusterError:
                pass

    # ------------------------------------------------------------------ running the image
    def run(self, step: Step, *, timeout: float | None = None, keep: bool = False) -> dict[str, dict[str, Any]]:
        """Run a step on its nodes and wait until each node's Job completed; returns the Jobs by node.

        Raises StepFailed with the Job's reason when one fails or the step does not end in time.
        """
        timeout = float(settings.ETCD_SNAPSHOT_TIMEOUT if timeout is None else timeout)
        self.start(step)
        try:
            return self.wait(step, timeout)
        finally:
            if not keep:
                self.cleanup(step)

    def start(self, step: Step) -> None:
        """Write the step's Secret and Plan; SUC takes it from there."""
        self.put_secret(step)
        op = Operation(OPERATION, self.distribution, IMAGE, image_version(), args=tuple(step.args),
                       summary=" ".join(step.args[:1]))
        body = plan_body(step.plan, op, selector=hostname_selector(step.nodes), concurrency=1,
                         labels={"corral.io/operation": OPERATION, "corral.io/snapshot-plan": step.plan},
                         cordon=False)
        body["spec"]["secrets"] = [{"name": self.secret_name(step), "path": SECRET_PATH}]
        body["spec"]["upgrade"]["envs"] = [
            {"name": "ETCD_SNAPSHOT_S3_SECRET_DIR", "value": SECRET_PATH},
            {"name": "ETCD_SNAPSHOT_CONFIG_FILE", "value": f"{SECRET_PATH}/config.json"},
        ]
        self.ops.put_plan(body)
        self.log(f"Plan {step.plan}: {step.args[0]} on {', '.join(step.nodes)}")

    def wait(self, step: Step, timeout: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            jobs = self.ops.jobs(step.plan)
            failed = {node: reason for node, job in jobs.items() if (reason := job_failure(job))}
            if failed:
                node, reason = sorted(failed.items())[0]
                raise StepFailed(f"{step.args[0]} on {node}: {self.failure_words(jobs[node], reason)}")
            done = {node: job for node, job in jobs.items() if _complete(job)}
            if all(n in done for n in step.nodes):
                return done
            if time.monotonic() > deadline:
                waiting = [n for n in step.nodes if n not in done]
                raise StepFailed(f"{step.args[0]} did not finish within {int(timeout)} s on {', '.join(waiting)}")
            self.checkpoint()
            time.sleep(POLL)

    def failure_words(self, job: dict[str, Any], reason: str) -> str:
        """The image's own last line of stderr when the pod log has it, else the Job's condition."""
        log = self.job_log(job).strip().splitlines()
        return log[-1] if log else reason

    def job_log(self, job: dict[str, Any]) -> str:
        name = job["metadata"]["name"]
        try:
            pods = self.api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/pods",
                                    query={"labelSelector": f"job-name={name}"}).get("items") or []
        except kube.ClusterError:
            return ""
        for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True):
            try:
                self.api.count()
                text = self.api.core.read_namespaced_pod_log(pod["metadata"]["name"], NAMESPACE,
                                                             _request_timeout=(5, 30))
            except Exception:  # noqa: BLE001 - a log we cannot read leaves the Job's reason
                continue
            if text:
                return text
        return ""

    def last_json_line(self, job: dict[str, Any]) -> dict[str, Any]:
        """The manifest ``verify`` prints as its last stdout line."""
        for line in reversed(self.job_log(job).strip().splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    break
        raise StepFailed("verify succeeded but its log holds no manifest line")

    def secret_name(self, step: Step) -> str:
        return f"{step.plan}-settings"[:253]

    def put_secret(self, step: Step) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": self.secret_name(step), "namespace": NAMESPACE,
                             "labels": {"app.kubernetes.io/managed-by": "corral", "corral.io/operation": OPERATION}},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in step.secret.items()}}
        self.ops.ensure_controller()  # the namespace exists once SUC runs
        self.api.put(f"/api/v1/namespaces/{NAMESPACE}/secrets", body)

    def cleanup(self, step: Step) -> None:
        """Delete the step's Plan, its Jobs and its Secret (the S3 keys do not stay on the cluster)."""
        try:
            self.ops.delete_plan(step.plan)
            for job in self.api.jobs(NAMESPACE, f"{JOB_PLAN}={step.plan}"):
                self.api.delete_job(NAMESPACE, job["metadata"]["name"])
            self.api.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/secrets/{self.secret_name(step)}")
        except kube.ClusterError as exc:
            if exc.status != 404:
                self.log(f"Could not clean up {step.plan}: {exc.reason}", "warning")

    def stale_plans(self, keep: set[str]) -> list[str]:
        """Delete snapshot Plans (and their Secrets) a restored etcd brought back; returns their names."""
        names = []
        for plan in self.ops.plans(f"corral.io/operation={OPERATION}"):
            name = plan["metadata"]["name"]
            if name in keep:
                continue
            self.cleanup(Step(name, ["stale"], [], {}))
            names.append(name)
        return names


def _complete(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    if any(c.get("type") == "Complete" and c.get("status") == "True" for c in status.get("conditions") or []):
        return True
    return bool(status.get("succeeded"))


def job_node(job: dict[str, Any]) -> str:
    return ((job.get("metadata") or {}).get("labels") or {}).get(JOB_NODE, "")
