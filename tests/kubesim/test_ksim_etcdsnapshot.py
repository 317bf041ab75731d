"""The simulated `corral/etcd-snapshot` image (backups/README.md) run by SUC Plans, through the official client.

The node's disk is read (and tampered with) through the test's handle on the fleet:
`sim.cluster(NAME).nodes[NODE].disk`. S3 is moto's server on loopback, with authentication on.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import yaml
from conftest import FAST
from ksim_helpers import wait_until
from kubernetes import client, config, watch

from kubesim import Fleet, start_fleet

G, V, NS = "upgrade.cattle.io", "v1", "system-upgrade"
SG, SV, SP = "k3s.cattle.io", "v1", "etcdsnapshotfiles"
IMAGE, IMAGE_VERSION = "corral/etcd-snapshot", "v0.1.0"
K3S_DIR = "/var/lib/rancher/k3s/server/db/snapshots"
RKE2_DIR = "/var/lib/rancher/rke2/server/db/snapshots"
BUCKET = "corral-snapshots"
CONFIG = {"services": {"kubelet": {"extra_args": {"max-pods": "110"}}}}
ALL = [{"operator": "Exists"}]

FLEET: dict[str, Any] = {
    "defaults": {"timings": FAST},
    "clusters": [
        {"name": "edge", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 1, "agent": 1}},
        {"name": "ha", "kind": "k3s", "version": "v1.17.4+k3s1", "nodes": {"server": 2, "agent": 1}},
        {"name": "old", "kind": "rke", "version": "v1.15.11", "system_upgrade_controller": True,
         "nodes": {"etcd": 1, "controlplane": 1, "worker": 1}},
    ],
}

# what the portal installs (backups/manifests/etcdsnapshotfile-crd.yaml)
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "etcdsnapshotfiles.k3s.cattle.io", "labels": {"app.kubernetes.io/managed-by": "corral"}},
    "spec": {"group": SG, "scope": "Cluster",
             "names": {"kind": "ETCDSnapshotFile", "listKind": "ETCDSnapshotFileList", "plural": SP,
                       "singular": "etcdsnapshotfile", "shortNames": ["etcd-snapshot"]},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "additionalPrinterColumns": [
                               {"name": "SnapshotName", "type": "string", "jsonPath": ".spec.snapshotName"},
                               {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName"},
                               {"name": "Size", "type": "string", "jsonPath": ".status.size"}],
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}


def crd_v1beta1() -> dict[str, Any]:
    old = copy.deepcopy(CRD)
    old["apiVersion"] = "apiextensions.k8s.io/v1beta1"
    version = old["spec"].pop("versions")[0]
    old["spec"].update(version="v1", versions=[{"name": "v1", "served": True, "storage": True}],
                       subresources=version["subresources"], preserveUnknownFields=True,
                       additionalPrinterColumns=[{"name": c["name"], "type": c["type"], "JSONPath": c["jsonPath"]}
                                                 for c in version["additionalPrinterColumns"]])
    return old


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def sim() -> Iterator[Fleet]:
    f = start_fleet(FLEET)
    try:
        yield f
    finally:
        f.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3:
    url: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def keys(self, prefix: str) -> list[str]:
        return sorted(o["Key"] for o in self.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """moto's server on loopback with authentication on (as tests/backups/test_etcd_snapshot_image.py)."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    handle = log.open("wb")
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                               env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3"))
    handle.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, f"moto exited with {process.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not listen"
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName="corral")
        key = iam.create_access_key(UserName="corral")["AccessKey"]
        iam.put_user_policy(UserName="corral", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        server = S3(url, key["AccessKeyId"], key["SecretAccessKey"])
        server.client().create_bucket(Bucket=BUCKET)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------- helpers (official client only)
@dataclass
class Api:
    v1: Any
    co: Any
    batch: Any
    apps: Any
    ext: Any


def api(sim: Fleet, name: str) -> Api:
    c = config.new_client_from_config_dict(yaml.safe_load(sim.kubeconfig(name)))
    return Api(client.CoreV1Api(c), client.CustomObjectsApi(c), client.BatchV1Api(c), client.AppsV1Api(c),
               client.ApiextensionsV1Api(c))


def install_crd(a: Api, v1beta1: bool = False) -> None:
    if v1beta1:
        a.co.create_cluster_custom_object("apiextensions.k8s.io", "v1beta1", "customresourcedefinitions",
                                          crd_v1beta1())
    else:
        a.ext.create_custom_resource_definition(CRD)

    def served() -> bool:
        try:
            return any(r.name == SP for r in a.co.get_api_resources(SG, SV).resources)
        except client.exceptions.ApiException:
            return False

    wait_until(served)


def cluster_uid(a: Api) -> str:
    return a.v1.read_namespace("kube-system").metadata.uid


def put_secret(a: Api, name: str, **s3: str) -> None:
    data = {"config.json": json.dumps(CONFIG), **s3}
    a.v1.create_namespaced_secret(NS, {"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "corral"}},
                                       "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def s3_settings(s3: S3, folder: str, **override: str) -> dict[str, str]:
    return {"bucket": BUCKET, "endpoint": s3.url, "region": "us-east-1", "folder": folder,
            "access-key": s3.access_key, "secret-key": s3.secret_key, "endpoint-ca": "", **override}


def run_plan(a: Api, plan: str, nodes: list[str], args: list[str], secret: str) -> None:
    """A Plan as backups/README.md describes it (what the portal's backups/etcd.py writes)."""
    a.co.create_namespaced_custom_object(G, V, NS, "plans", {
        "apiVersion": f"{G}/{V}", "kind": "Plan",
        "metadata": {"name": plan, "namespace": NS,
                     "labels": {"app.kubernetes.io/managed-by": "corral", "corral.io/operation": "etcd-snapshot"}},
        "spec": {"version": IMAGE_VERSION, "concurrency": 1, "serviceAccountName": "system-upgrade",
                 "cordon": False, "tolerations": ALL,
                 "nodeSelector": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                                                        "values": nodes}]},
                 "secrets": [{"name": secret, "path": "/corral"}],
                 "upgrade": {"image": IMAGE, "args": args,
                             "envs": [{"name": "ETCD_SNAPSHOT_S3_SECRET_DIR", "value": "/corral"},
                                      {"name": "ETCD_SNAPSHOT_CONFIG_FILE", "value": "/corral/config.json"}]}}})


def save_args(name: str, uid: str) -> list[str]:
    return ["save", "--name", name, "--cluster", uid, "--cluster-name", "edge", "--kubernetes-version",
            "v1.17.4+k3s1", "--config-version", "3", "--kind", "manual"]


def check_args(mode: str, name: str, uid: str, sha: str) -> list[str]:
    return [mode, "--snapshot", name, "--expect-cluster", uid, "--sha256", sha]


def node_done(a: Api, plan: str, node: str) -> bool:
    try:
        h = (a.co.get_namespaced_custom_object(G, V, NS, "plans", plan).get("status") or {}).get("latestHash")
    except client.exceptions.ApiException:
        return False
    return bool(h) and (a.v1.read_node(node).metadata.labels or {}).get(f"plan.upgrade.cattle.io/{plan}") == h


def wait_done(a: Api, plan: str, node: str, timeout: float = 20) -> None:
    wait_until(lambda: node_done(a, plan, node), timeout=timeout)


def job_of(a: Api, plan: str) -> Any:
    jobs = a.batch.list_namespaced_job(NS, label_selector=f"upgrade.cattle.io/plan={plan}").items
    return jobs[0] if jobs else None


def failed_condition(job: Any) -> Any:
    return next((c for c in (job.status.conditions or []) if c.type == "Failed" and c.status == "True"), None) \
        if job is not None else None


def wait_failed(a: Api, plan: str, timeout: float = 30) -> Any:
    return wait_until(lambda: failed_condition(job_of(a, plan)) and job_of(a, plan), timeout=timeout)


def pod_log(a: Api, plan: str) -> list[str]:
    """The log of the plan's Job's newest pod (retries start within a second: the log's own
    nanosecond timestamps tell which ran last), as the portal reads it."""
    job = job_of(a, plan)
    pods = a.v1.list_namespaced_pod(NS, label_selector=f"job-name={job.metadata.name}").items
    logs = [a.v1.read_namespaced_pod_log(p.metadata.name, NS, timestamps=True).strip().splitlines() for p in pods]
    newest = max(logs, key=lambda lines: lines[0].split(" ", 1)[0])
    plain = a.v1.read_namespaced_pod_log(pods[logs.index(newest)].metadata.name, NS).strip().splitlines()
    assert [line.split(" ", 1)[1] for line in newest] == plain
    return plain


def snapshot_file(a: Api, name: str) -> dict[str, Any] | None:
    try:
        return a.co.get_cluster_custom_object(SG, SV, SP, name)
    except client.exceptions.ApiException as exc:
        assert exc.status == 404
        return None


def ready(a: Api, node: str) -> str:
    return next(c.status for c in a.v1.read_node(node).status.conditions if c.type == "Ready")


def deployment(a: Api, name: str) -> None:
    a.apps.create_namespaced_deployment("default", {
        "metadata": {"name": name}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                                             "template": {"metadata": {"labels": {"app": name}},
                                                          "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})


def exists(call: Any, *args: Any) -> bool:
    try:
        call(*args)
        return True
    except client.exceptions.ApiException as exc:
        assert exc.status == 404, exc
        return False


def save(a: Api, sim: Fleet, cluster: str, node: str, name: str, plan: str, secret: str,
         directory: str = K3S_DIR) -> dict[str, Any]:
    run_plan(a, plan, [node], save_args(name, cluster_uid(a)), secret)
    wait_done(a, plan, node)
    return json.loads(sim.cluster(cluster).nodes[node].disk.read(f"{directory}/{name}.manifest.json"))


# ---------------------------------------------------------------------- tests
def test_save_records_the_snapshot_and_verify_logs_the_manifest(sim: Fleet) -> None:
    a = api(sim, "edge")
    install_crd(a)
    uid = cluster_uid(a)
    put_secret(a, "corral-etcd-snapshot-1")
    name = "edge-manual-20261128-100000"
    run_plan(a, "corral-snap-1", ["edge-server-1"], save_args(name, uid), "corral-etcd-snapshot-1")
    wait_done(a, "corral-snap-1", "edge-server-1")

    disk = sim.cluster("edge").nodes["edge-server-1"].disk
    blob = disk.read(f"{K3S_DIR}/{name}")
    manifest = json.loads(disk.read(f"{K3S_DIR}/{name}.manifest.json"))
    assert sorted(disk.listdir(K3S_DIR)) == [name, f"{name}.manifest.json"]
    assert not sim.cluster("edge").nodes["edge-agent-1"].disk.files()  # each node has its own disk
    assert {k: manifest[k] for k in ("format", "name", "cluster", "cluster_name", "node", "distribution",
                                      "kubernetes_version", "config_version", "config", "kind")} == {
        "format": "corral.etcd-snapshot/v1", "name": name, "cluster": uid, "cluster_name": "edge",
        "node": "edge-server-1", "distribution": "k3s", "kubernetes_version": "v1.17.4+k3s1", "config_version": 3,
        "config": CONFIG, "kind": "manual"}
    assert manifest["size"] == len(blob) and manifest["sha256"] == hashlib.sha256(blob).hexdigest()
    assert manifest["created"].endswith("Z") and manifest["s3"] is None
    assert manifest["etcd"]["revision"] > 0 and manifest["etcd"]["keys"] == len(manifest["inventory"])
    inventory = {tuple(i) for i in manifest["inventory"]}
    assert {("nodes", "", "edge-server-1"), ("namespaces", "", "kube-system"),
            ("deployments.apps", NS, "system-upgrade-controller"), ("plans.upgrade.cattle.io", NS, "corral-snap-1"),
            ("secrets", NS, "corral-etcd-snapshot-1"),
            ("customresourcedefinitions.apiextensions.k8s.io", "", "etcdsnapshotfiles.k3s.cattle.io")} <= inventory
    assert blob.startswith(b"KUBESIM-ETCD-SNAPSHOT/1\n")

    # recorded as k3s does: ETCDSnapshotFile local-NAME, status through its subresource
    record = snapshot_file(a, f"local-{name}")
    assert record is not None and record["kind"] == "ETCDSnapshotFile"
    assert record["metadata"]["labels"] == {"etcd.k3s.cattle.io/snapshot-storage-node": "edge-server-1",
                                            "corral.io/snapshot": name}
    assert record["spec"] == {
        "snapshotName": name, "nodeName": "edge-server-1", "location": f"file://{K3S_DIR}/{name}",
        "metadata": {"corral.io/cluster": uid, "corral.io/kubernetes-version": "v1.17.4+k3s1",
                     "corral.io/config-version": "3", "corral.io/kind": "manual",
                     "corral.io/sha256": manifest["sha256"], "corral.io/revision": str(manifest["etcd"]["revision"])}}
    assert record["status"] == {"size": str(len(blob)), "creationTime": manifest["created"], "readyToUse": True}
    assert snapshot_file(a, f"s3-{name}") is None  # no bucket in the Secret: local disk only
    assert pod_log(a, "corral-snap-1")[-2:] == [f"etcd-snapshot: wrote /host{K3S_DIR}/{name}.manifest.json",
                                                f"etcd-snapshot: ETCDSnapshotFile local-{name} created"]

    # verify: its log's last line is the manifest, as one JSON line
    run_plan(a, "corral-verify-1", ["edge-server-1"], check_args("verify", name, uid, manifest["sha256"]),
             "corral-etcd-snapshot-1")
    wait_done(a, "corral-verify-1", "edge-server-1")
    lines = pod_log(a, "corral-verify-1")
    assert json.loads(lines[-1]) == manifest
    assert lines[-2] == (f"etcd-snapshot: verified {name} from /host{K3S_DIR}: cluster {uid}, {len(blob)} bytes, "
                         f"sha256 {manifest['sha256']}, etcd revision {manifest['etcd']['revision']}")

    # the same NAME again (SUC may run a save Plan again): exit 0, "already saved", nothing rewritten
    run_plan(a, "corral-snap-1b", ["edge-server-1"], save_args(name, uid), "corral-etcd-snapshot-1")
    wait_done(a, "corral-snap-1b", "edge-server-1")
    assert pod_log(a, "corral-snap-1b")[-2:] == [
        f"etcd-snapshot: {name} already saved in /host{K3S_DIR}; nothing changed",
        f"etcd-snapshot: ETCDSnapshotFile local-{name} already there"]
    assert disk.read(f"{K3S_DIR}/{name}") == blob

    # not an etcd node: the Job fails, its pod says why (log and termination message)
    run_plan(a, "corral-snap-agent", ["edge-agent-1"], save_args("edge-manual-agent", uid), "corral-etcd-snapshot-1")
    job = wait_failed(a, "corral-snap-agent")
    assert failed_condition(job).reason == "BackoffLimitExceeded"
    line = pod_log(a, "corral-snap-agent")[-1]
    assert line == ("etcd-snapshot: etcd at https://127.0.0.1:2379 failed (exit 1): etcd is not running on this "
                    "node (edge-agent-1); Error: unhealthy cluster")
    pods = a.v1.list_namespaced_pod(NS, label_selector=f"job-name={job.metadata.name}").items
    assert {p.status.container_statuses[0].state.terminated.message for p in pods} == {line}
    assert not sim.cluster("edge").nodes["edge-agent-1"].disk.files()


def test_s3_upload_download_wrong_key_and_delete(sim: Fleet, s3: S3) -> None:
    a = api(sim, "edge")
    install_crd(a)
    uid = cluster_uid(a)
    put_secret(a, "corral-etcd-snapshot-2", **s3_settings(s3, "fleet/edge"))
    name = "edge-manual-20261128-110000"
    manifest = save(a, sim, "edge", "edge-server-1", name, "corral-snap-2", "corral-etcd-snapshot-2")
    assert s3.keys("fleet/edge/") == [f"fleet/edge/{name}", f"fleet/edge/{name}.manifest.json"]
    disk = sim.cluster("edge").nodes["edge-server-1"].disk
    body = s3.client().get_object(Bucket=BUCKET, Key=f"fleet/edge/{name}")["Body"].read()
    assert body == disk.read(f"{K3S_DIR}/{name}")
    remote = json.loads(s3.client().get_object(Bucket=BUCKET, Key=f"fleet/edge/{name}.manifest.json")["Body"].read())
    assert remote == manifest and manifest["s3"] == {"bucket": BUCKET, "endpoint": s3.url, "region": "us-east-1",
                                                     "folder": "fleet/edge", "key": f"fleet/edge/{name}"}
    record = snapshot_file(a, f"s3-{name}")
    assert record is not None and snapshot_file(a, f"local-{name}") is not None
    assert record["spec"]["nodeName"] == "s3" and record["spec"]["location"] == f"s3://{BUCKET}/fleet/edge/{name}"
    assert record["spec"]["s3"] == {"bucket": BUCKET, "endpoint": s3.url, "region": "us-east-1",
                                    "folder": "fleet/edge", "prefix": "fleet/edge"}  # no keys
    assert record["metadata"]["labels"]["etcd.k3s.cattle.io/snapshot-storage-node"] == "s3"
    assert pod_log(a, "corral-snap-2")[-4:] == [
        f"etcd-snapshot: uploaded {name} and its manifest to s3://{BUCKET}/fleet/edge/ at {s3.url}",
        f"etcd-snapshot: wrote /host{K3S_DIR}/{name}.manifest.json",
        f"etcd-snapshot: ETCDSnapshotFile local-{name} created", f"etcd-snapshot: ETCDSnapshotFile s3-{name} created"]

    # the node lost its copy: verify fetches both files from the bucket into the snapshot directory
    disk.remove(f"{K3S_DIR}/{name}")
    disk.remove(f"{K3S_DIR}/{name}.manifest.json")
    run_plan(a, "corral-verify-2", ["edge-server-1"], check_args("verify", name, uid, manifest["sha256"]),
             "corral-etcd-snapshot-2")
    wait_done(a, "corral-verify-2", "edge-server-1")
    lines = pod_log(a, "corral-verify-2")
    assert json.loads(lines[-1]) == manifest
    assert lines[-2].startswith(f"etcd-snapshot: verified {name} from s3://{BUCKET}/fleet/edge/ at {s3.url}: ")
    assert disk.read(f"{K3S_DIR}/{name}") == body

    # a wrong secret key: the Job fails, the reason is the image's one line; nothing is saved
    put_secret(a, "corral-etcd-snapshot-3", **s3_settings(s3, "fleet/edge", **{"secret-key": "not-the-secret"}))
    run_plan(a, "corral-snap-3", ["edge-server-1"], save_args("edge-manual-bad", uid), "corral-etcd-snapshot-3")
    job = wait_failed(a, "corral-snap-3")
    assert job.status.failed == 3  # SUC's backoffLimit 2
    line = pod_log(a, "corral-snap-3")[-1]
    assert line.startswith(f"etcd-snapshot: S3 access check in s3://{BUCKET}/fleet/edge/ at {s3.url} failed: "
                           "SignatureDoesNotMatch")
    pod = a.v1.list_namespaced_pod(NS, label_selector=f"job-name={job.metadata.name}").items[0]
    assert pod.status.container_statuses[0].state.terminated.message.startswith("etcd-snapshot: S3 access check")
    assert not disk.exists(f"{K3S_DIR}/edge-manual-bad") and snapshot_file(a, "local-edge-manual-bad") is None
    plan = a.co.get_namespaced_custom_object(G, V, NS, "plans", "corral-snap-3")
    complete = next(c for c in plan["status"]["conditions"] if c["type"] == "Complete")
    assert complete["reason"] == "JobFailed" and "BackoffLimitExceeded" in complete["message"]

    # an unreachable endpoint fails the same way, with boto's reason
    nowhere = f"http://127.0.0.1:{free_port()}"
    put_secret(a, "corral-etcd-snapshot-4", **s3_settings(s3, "fleet/edge", endpoint=nowhere))
    run_plan(a, "corral-snap-4", ["edge-server-1"], save_args("edge-manual-away", uid), "corral-etcd-snapshot-4")
    wait_failed(a, "corral-snap-4")
    assert f"at {nowhere} failed: Could not connect to the endpoint URL" in pod_log(a, "corral-snap-4")[-1]

    # delete: the files on the node, both objects in the bucket, both ETCDSnapshotFiles
    run_plan(a, "corral-prune-2", ["edge-server-1"], ["delete", "--snapshot", name], "corral-etcd-snapshot-2")
    wait_done(a, "corral-prune-2", "edge-server-1")
    assert disk.listdir(K3S_DIR) == [] and s3.keys("fleet/edge/") == []
    assert snapshot_file(a, f"local-{name}") is None and snapshot_file(a, f"s3-{name}") is None
    assert a.co.list_cluster_custom_object(SG, SV, SP)["items"] == []


def test_cluster_reset_restores_the_state_and_nodes_keep_their_real_versions(sim: Fleet) -> None:
    a = api(sim, "ha")
    install_crd(a)
    uid = cluster_uid(a)
    put_secret(a, "corral-etcd-snapshot-5")
    name = "ha-manual-20261128-120000"
    manifest = save(a, sim, "ha", "ha-server-1", name, "corral-snap-5", "corral-etcd-snapshot-5")

    # after the snapshot: a node's Kubernetes is upgraded, a Deployment is created, the restore marker written
    a.co.create_namespaced_custom_object(G, V, NS, "plans", {
        "apiVersion": f"{G}/{V}", "kind": "Plan", "metadata": {"name": "k3s-agent", "namespace": NS},
        "spec": {"concurrency": 1, "serviceAccountName": "system-upgrade", "version": "v1.17.5+k3s1",
                 "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "ha-agent-1"}},
                 "upgrade": {"image": "rancher/k3s-upgrade"}}})
    wait_until(lambda: a.v1.read_node("ha-agent-1").status.node_info.kubelet_version == "v1.17.5+k3s1"
               and ready(a, "ha-agent-1") == "True", timeout=20)
    deployment(a, "after-snapshot")
    a.v1.create_namespaced_config_map("kube-system", {"metadata": {"name": "corral-restore"},
                                                      "data": {"restore": "5"}})
    run_plan(a, "corral-restore-5", ["ha-server-1"], check_args("cluster-reset", name, uid, manifest["sha256"]),
             "corral-etcd-snapshot-5")
    wait_until(lambda: not exists(a.v1.read_namespaced_config_map, "corral-restore", "kube-system"), timeout=20)

    # the restored etcd: what came after the snapshot is gone, this Plan and its Job too
    assert not exists(a.apps.read_namespaced_deployment, "after-snapshot", "default")
    assert not exists(a.co.get_namespaced_custom_object, G, V, NS, "plans", "corral-restore-5")
    assert not exists(a.co.get_namespaced_custom_object, G, V, NS, "plans", "k3s-agent")
    assert job_of(a, "corral-restore-5") is None
    assert cluster_uid(a) == uid
    # ... but the machines still run what they run: the node reports its real version again
    wait_until(lambda: a.v1.read_node("ha-agent-1").status.node_info.kubelet_version == "v1.17.5+k3s1", timeout=10)
    assert a.v1.read_node("ha-server-1").status.node_info.kubelet_version == "v1.17.4+k3s1"
    # the save Plan came back with the snapshot; run again, it finds the manifest ("already saved") and
    # records the ETCDSnapshotFile the restored etcd predates
    wait_done(a, "corral-snap-5", "ha-server-1")
    assert pod_log(a, "corral-snap-5")[-2:] == [
        f"etcd-snapshot: {name} already saved in /host{K3S_DIR}; nothing changed",
        f"etcd-snapshot: ETCDSnapshotFile local-{name} created"]
    assert sim.cluster("ha").nodes["ha-server-1"].disk.exists(f"{K3S_DIR}/{name}")  # disks survive a restore
    assert snapshot_file(a, f"local-{name}") is not None

    # rejoin on the other server: NotReady for a moment, then done
    put_secret(a, "corral-etcd-snapshot-6")
    since = a.v1.list_node().metadata.resource_version
    run_plan(a, "corral-rejoin-5", ["ha-server-2"], ["rejoin"], "corral-etcd-snapshot-6")
    wait_done(a, "corral-rejoin-5", "ha-server-2")
    seen = [next(c.status for c in ev["object"].status.conditions if c.type == "Ready")
            for ev in watch.Watch().stream(a.v1.list_node, field_selector="metadata.name=ha-server-2",
                                           resource_version=since, timeout_seconds=1)]
    assert "False" in seen and seen[-1] == "True" and ready(a, "ha-server-2") == "True"
    assert pod_log(a, "corral-rejoin-5") == ["etcd-snapshot: stopped k3s",
                                             "etcd-snapshot: no /var/lib/rancher/k3s/server/db/etcd to move aside",
                                             "etcd-snapshot: started k3s; it joins the restored etcd"]


def test_a_tampered_snapshot_is_refused_and_nothing_changes(sim: Fleet) -> None:
    a = api(sim, "edge")
    install_crd(a)
    uid = cluster_uid(a)
    put_secret(a, "corral-etcd-snapshot-7")
    name = "edge-manual-20261128-130000"
    manifest = save(a, sim, "edge", "edge-server-1", name, "corral-snap-7", "corral-etcd-snapshot-7")
    deployment(a, "kept")
    disk = sim.cluster("edge").nodes["edge-server-1"].disk
    blob = disk.read(f"{K3S_DIR}/{name}")
    disk.write(f"{K3S_DIR}/{name}", blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:])  # same size, one bit flipped
    run_plan(a, "corral-verify-7", ["edge-server-1"], check_args("verify", name, uid, manifest["sha256"]),
             "corral-etcd-snapshot-7")
    wait_failed(a, "corral-verify-7")
    assert pod_log(a, "corral-verify-7")[-1].startswith(f"etcd-snapshot: snapshot /host{K3S_DIR}/{name} is corrupt: "
                                                        "sha256 ")
    run_plan(a, "corral-restore-7", ["edge-server-1"], check_args("cluster-reset", name, uid, manifest["sha256"]),
             "corral-etcd-snapshot-7")
    wait_failed(a, "corral-restore-7")
    assert "is corrupt" in pod_log(a, "corral-restore-7")[-1]
    assert exists(a.apps.read_namespaced_deployment, "kept", "default")
    assert exists(a.co.get_namespaced_custom_object, G, V, NS, "plans", "corral-restore-7")

    # truncated; another cluster's snapshot; a checksum the portal does not expect
    disk.write(f"{K3S_DIR}/{name}", blob[:-10])
    run_plan(a, "corral-restore-8", ["edge-server-1"], check_args("cluster-reset", name, uid, manifest["sha256"]),
             "corral-etcd-snapshot-7")
    wait_failed(a, "corral-restore-8")
    assert "truncated or replaced" in pod_log(a, "corral-restore-8")[-1]
    disk.write(f"{K3S_DIR}/{name}", blob)
    run_plan(a, "corral-restore-9", ["edge-server-1"], check_args("cluster-reset", name, "c-other", manifest["sha256"]),
             "corral-etcd-snapshot-7")
    wait_failed(a, "corral-restore-9")
    assert f"belongs to cluster '{uid}', not 'c-other'" in pod_log(a, "corral-restore-9")[-1]
    run_plan(a, "corral-verify-10", ["edge-server-1"], check_args("verify", name, uid, "0" * 64),
             "corral-etcd-snapshot-7")
    wait_failed(a, "corral-verify-10")
    assert f"expected {'0' * 64}" in pod_log(a, "corral-verify-10")[-1]
    # a manifest that matches a broken archive: the archive's own check (`snapshot status`) refuses it
    broken = b"KUBESIM-ETCD-SNAPSHOT/1\n" + b"\0" * 64
    forged = dict(manifest, size=len(broken), sha256=hashlib.sha256(broken).hexdigest())
    disk.write(f"{K3S_DIR}/{name}", broken)
    disk.write(f"{K3S_DIR}/{name}.manifest.json", json.dumps(forged).encode())
    run_plan(a, "corral-restore-11", ["edge-server-1"], check_args("cluster-reset", name, uid, forged["sha256"]),
             "corral-etcd-snapshot-7")
    wait_failed(a, "corral-restore-11")
    assert pod_log(a, "corral-restore-11")[-1].startswith(
        f"etcd-snapshot: snapshot {name} is not a readable etcd snapshot: etcdctl snapshot status failed (exit 1): "
        "snapshot file integrity check failed")
    assert exists(a.apps.read_namespaced_deployment, "kept", "default")


def test_without_the_crd_nothing_is_recorded_and_old_clusters_serve_it_as_v1beta1(sim: Fleet) -> None:
    a = api(sim, "edge")
    uid = cluster_uid(a)
    put_secret(a, "corral-etcd-snapshot-11")
    run_plan(a, "corral-snap-11", ["edge-server-1"], save_args("edge-manual-nocrd", uid), "corral-etcd-snapshot-11")
    job = wait_failed(a, "corral-snap-11")
    # the first attempt saved the files, then could not record them; the retries find the manifest
    # ("already saved") and fail recording it again
    assert job.status.failed == 3
    assert pod_log(a, "corral-snap-11")[-2:] == [
        f"etcd-snapshot: edge-manual-nocrd already saved in /host{K3S_DIR}; nothing changed",
        "etcd-snapshot: recording ETCDSnapshotFile local-edge-manual-nocrd failed: HTTP 404: the server could not "
        "find the requested resource"]
    assert sim.cluster("edge").nodes["edge-server-1"].disk.exists(f"{K3S_DIR}/edge-manual-nocrd.manifest.json")
    install_crd(a)
    assert a.co.list_cluster_custom_object(SG, SV, SP)["items"] == []
    run_plan(a, "corral-snap-11b", ["edge-server-1"], save_args("edge-manual-nocrd", uid), "corral-etcd-snapshot-11")
    wait_done(a, "corral-snap-11b", "edge-server-1")  # once served, the next run records it
    assert snapshot_file(a, "local-edge-manual-nocrd") is not None

    # the fleet's injected failures hold for this image too
    sim.fail_node_jobs("edge", "edge-server-1", "etcd-snapshot: disk full")
    run_plan(a, "corral-snap-12", ["edge-server-1"], save_args("edge-manual-full", uid), "corral-etcd-snapshot-11")
    wait_failed(a, "corral-snap-12")
    assert pod_log(a, "corral-snap-12")[-1] == "etcd-snapshot: disk full"

    # RKE on Kubernetes 1.15: apiextensions v1beta1 only; the etcd node; RKE2's snapshot directory
    old = api(sim, "old")
    install_crd(old, v1beta1=True)
    put_secret(old, "corral-etcd-snapshot-13")
    wait_until(lambda: (old.apps.read_namespaced_deployment("system-upgrade-controller", NS).status.ready_replicas
                        or 0) >= 1)
    manifest = save(old, sim, "old", "old-etcd-1", "old-manual-1", "corral-snap-13", "corral-etcd-snapshot-13",
                    directory=RKE2_DIR)
    assert manifest["distribution"] == "rke2"
    record = snapshot_file(old, "local-old-manual-1")
    assert record is not None and record["apiVersion"] == "k3s.cattle.io/v1"
    assert record["spec"]["location"] == f"file://{RKE2_DIR}/old-manual-1"
    assert record["status"]["readyToUse"] is True


def test_a_hanging_s3_endpoint_does_not_stop_the_cluster(sim: Fleet) -> None:
    """S3 calls run off the simulator's loop: while one hangs, the cluster's controllers keep going."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # accepts connections, never answers
    try:
        a = api(sim, "edge")
        install_crd(a)
        put_secret(a, "corral-etcd-snapshot-14", bucket=BUCKET, endpoint=f"http://127.0.0.1:{hole.getsockname()[1]}",
                   region="us-east-1", folder="x", **{"access-key": "a", "secret-key": "b"})
        run_plan(a, "corral-snap-14", ["edge-server-1"], save_args("edge-manual-hang", cluster_uid(a)),
                 "corral-etcd-snapshot-14")
        job = wait_until(lambda: job_of(a, "corral-snap-14"))
        wait_until(lambda: any(p.status.phase == "Running" for p in a.v1.list_namespaced_pod(
            NS, label_selector=f"job-name={job.metadata.name}").items))
        deployment(a, "meanwhile")
        wait_until(lambda: [p.status.phase for p in a.v1.list_namespaced_pod(
            "default", label_selector="app=meanwhile").items] == ["Running"], timeout=10)
        assert failed_condition(job_of(a, "corral-snap-14")) is None
        assert not node_done(a, "corral-snap-14", "edge-server-1")
    finally:
        hole.close()
