"""`corral/etcd-snapshot` played on simulated nodes (the contract is backups/README.md).

The real image (backups/images/etcd-snapshot/etcd-snapshot.py) runs as the upgrade container of a
system-upgrade-controller Plan on an etcd (server) node, with the host's root at /host and the
Plan's Secret mounted at /corral. Here:

* the host is the node's `NodeDisk` (hostPath volumes map container paths onto it), the snapshot
  directory `/var/lib/rancher/<rke2|k3s>/server/db/snapshots` (rke clusters are RKE2, k3s k3s);
* secret and configMap volumes are the objects in the cluster's store (what the kubelet mounts),
  the container's env is resolved as the kubelet would (value, fieldRef, secret/configMap refs);
* the etcd snapshot is `kubesim.etcd.snapshot(cluster)`, `snapshot status` is `kubesim.etcd.verify`,
  `--cluster-reset` is `kubesim.etcd.restore` (the store is replaced: this pod, its Job and Plan go);
* S3 is the real endpoint of the Secret, reached with boto3 on a worker thread (never on the loop);
  the container is "busy" meanwhile and ends through the same callback as the upgrade images;
* ETCDSnapshotFile objects are written through the API server, as the image does with its token.

What the container prints goes to the node's container log (`kubectl logs` shows it); a failure
ends it with one line, `etcd-snapshot: <reason>`, as the real script's stderr.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import logging
import os
import posixpath
import re
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import errors, etcd
from ..util import dig, now_iso

if TYPE_CHECKING:
    from ..cluster import Cluster, NodeRuntime

log = logging.getLogger("kubesim")

IMAGE = "corral/etcd-snapshot"
FORMAT = "corral.etcd-snapshot/v1"
MANIFEST_SUFFIX = ".manifest.json"
DISTRIBUTIONS = ("rke2", "k3s")
KINDS = ("manual", "recurring")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
S3_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
S3_FIELDS = ("bucket", "endpoint", "region", "folder", "access-key", "secret-key", "endpoint-ca")
SNAPSHOT_FILES = "etcdsnapshotfiles.k3s.cattle.io"
SNAPSHOT_FILES_GROUP, SNAPSHOT_FILES_VERSION = "k3s.cattle.io", "v1"
STORAGE_NODE = "etcd.k3s.cattle.io/snapshot-storage-node"
SNAPSHOT_LABEL = "corral.io/snapshot"
SERVICES = {"rke2": "rke2-server", "k3s": "k3s"}


class Failure(Exception):
    """The container exits 1 with this reason (one line)."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def distribution_of(cluster: Cluster) -> str:
    """What the machines of a simulated cluster run: rke clusters RKE2, k3s clusters k3s, imported neither."""
    return {"rke": "rke2", "k3s": "k3s"}.get(cluster.kind, "")


def is_etcd_node(cluster: Cluster, rt: NodeRuntime) -> bool:
    """rke: the etcd role; k3s: servers (embedded etcd runs on every server)."""
    if cluster.kind == "rke":
        return "etcd" in rt.roles
    if cluster.kind == "k3s":
        return bool({"server", "master"} & set(rt.roles))
    return False


def check_name(name: str) -> str:
    if not name or not NAME.match(name) or name.endswith(MANIFEST_SUFFIX):
        raise Failure(f"invalid snapshot name {name!r}")
    return name


def object_name(storage: str, name: str) -> str:
    """`local-NAME` / `s3-NAME`, made a valid object name when NAME cannot be one as it is."""
    full = f"{storage}-{name}"
    if len(full) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", full) and ".." not in full:
        return full
    clean = re.sub(r"[^a-z0-9.-]", "-", full.lower())
    clean = re.sub(r"[.-]*\.[.-]*", ".", clean)  # every dot-separated part starts and ends alphanumeric
    return clean[:253].strip(".-")


def label_value(value: str) -> str:
    """A label value holds at most 63 characters: a longer one keeps its start and a hash of the whole."""
    if len(value) <= 63 and re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", value):
        return value
    head = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:54].strip("-_.")
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{head}-{digest}" if head else digest


# ---------------------------------------------------------------------- the container's view
@dataclass
class Mount:
    path: str  # in the container
    host: str | None = None  # a hostPath volume: this directory of the node's disk
    files: dict[str, bytes] = field(default_factory=dict)  # a secret/configMap volume (read-only)


class ContainerFS:
    """Files as the container sees them: hostPath mounts onto the node's disk, secret and configMap
    mounts read-only, anything else in the container's own (throw-away) filesystem."""

    def __init__(self, rt: NodeRuntime, mounts: list[Mount]) -> None:
        self.rt = rt
        self.mounts = sorted(mounts, key=lambda m: len(m.path), reverse=True)
        self.scratch: dict[str, bytes] = {}

    @staticmethod
    def norm(path: str) -> str:
        return posixpath.normpath("/" + str(path).lstrip("/"))

    def _find(self, path: str) -> tuple[Mount | None, str]:
        p = self.norm(path)
        for m in self.mounts:
            base = self.norm(m.path)
            if p == base:
                return m, ""
            if p.startswith(base.rstrip("/") + "/"):
                return m, p[len(base.rstrip("/")) + 1:]
        return None, p

    def host_path(self, path: str) -> str | None:
        """The node path behind a container path, or None when it is not on a hostPath mount."""
        m, rel = self._find(path)
        if m is None or m.host is None:
            return None
        return self.norm(posixpath.join(m.host, rel)) if rel else self.norm(m.host)

    def read(self, path: str) -> bytes:
        m, rel = self._find(path)
        if m is None:
            got = self.scratch.get(rel)
        elif m.host is not None:
            got = self.rt.disk.get(self.host_path(path) or "/")
        else:
            got = m.files.get(rel)
        if got is None:
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{path}'")
        return got

    def exists(self, path: str) -> bool:
        try:
            self.read(path)
            return True
        except FileNotFoundError:
            return False

    def is_dir(self, path: str) -> bool:
        m, rel = self._find(path)
        if m is None:
            return any(f.startswith(rel.rstrip("/") + "/") for f in self.scratch)
        if m.host is not None:
            return self.rt.disk.is_dir(self.host_path(path) or "/")
        return rel == "" or any(f.startswith(rel + "/") for f in m.files)

    def listdir(self, path: str) -> list[str]:
        m, rel = self._find(path)
        if m is not None and m.host is not None:
            return self.rt.disk.listdir(self.host_path(path) or "/")
        files = self.scratch if m is None else m.files
        prefix = (rel.rstrip("/") + "/") if rel else ""
        return sorted({f[len(prefix):].split("/", 1)[0] for f in files if f.startswith(prefix)})

    def write(self, path: str, data: bytes) -> None:
        m, rel = self._find(path)
        if m is None:
            self.scratch[rel] = data
        elif m.host is not None:
            self.rt.disk.write(self.host_path(path) or "/", data)
        else:
            raise Failure(f"[Errno 30] Read-only file system: '{path}'")

    def remove(self, path: str) -> bool:
        m, rel = self._find(path)
        if m is None:
            return self.scratch.pop(rel, None) is not None
        if m.host is not None:
            return self.rt.disk.remove(self.host_path(path) or "/")
        raise Failure(f"[Errno 30] Read-only file system: '{path}'")


def _secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(str(v or ""), validate=False)
        except ValueError:
            out[k] = b""
    for k, v in (secret.get("stringData") or {}).items():  # the API folds it into data; be lenient
        out[k] = str(v).encode()
    return out


def _configmap_data(cm: dict[str, Any]) -> dict[str, bytes]:
    out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    for k, v in (cm.get("binaryData") or {}).items():
        out[k] = base64.b64decode(str(v or ""))
    return out


def _items(data: dict[str, bytes], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    return {it.get("path") or it.get("key", ""): data[it["key"]] for it in items if it.get("key") in data}


def container_fs(cluster: Cluster, pod: dict[str, Any], ctr: dict[str, Any], rt: NodeRuntime) -> ContainerFS:
    """Resolve the container's volumeMounts to the node's disk and the Secrets/ConfigMaps in the store."""
    ns = pod["metadata"]["namespace"]
    volumes = {v.get("name"): v for v in dig(pod, "spec", "volumes", default=[]) or []}
    mounts: list[Mount] = []
    for vm in ctr.get("volumeMounts") or []:
        vol = volumes.get(vm.get("name"))
        path = vm.get("mountPath") or ""
        if vol is None or not path:
            continue
        sub = vm.get("subPath") or ""
        if "hostPath" in vol:
            mounts.append(Mount(path, host=posixpath.join((vol["hostPath"] or {}).get("path") or "/", sub)))
        elif "secret" in vol:
            src = vol["secret"] or {}
            secret = cluster.store.get("secrets", ns, src.get("secretName") or "")
            if secret is None:
                if src.get("optional"):
                    mounts.append(Mount(path))
                    continue
                raise Failure(f'MountVolume.SetUp failed for volume "{vm.get("name")}" : '
                              f'secret "{src.get("secretName")}" not found')
            mounts.append(Mount(path, files=_items(_secret_data(secret), src.get("items"))))
        elif "configMap" in vol:
            src = vol["configMap"] or {}
            cm = cluster.store.get("configmaps", ns, src.get("name") or "")
            if cm is None:
                if src.get("optional"):
                    mounts.append(Mount(path))
                    continue
                raise Failure(f'MountVolume.SetUp failed for volume "{vm.get("name")}" : '
                              f'configmap "{src.get("name")}" not found')
            mounts.append(Mount(path, files=_items(_configmap_data(cm), src.get("items"))))
        else:  # emptyDir, downwardAPI, ...: nothing the image reads
            mounts.append(Mount(path))
    return ContainerFS(rt, mounts)


def _field(pod: dict[str, Any], path: str) -> str:
    m = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return str((pod["metadata"].get(m.group(1)) or {}).get(m.group(2), ""))
    value = dig(pod, *path.split("."), default="")
    return "" if value is None else str(value)


def container_env(cluster: Cluster, pod: dict[str, Any], ctr: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom, then env)."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = {}

    def secret(name: str) -> dict[str, bytes]:
        obj = cluster.store.get("secrets", ns, name)
        return _secret_data(obj) if obj else {}

    def configmap(name: str) -> dict[str, bytes]:
        obj = cluster.store.get("configmaps", ns, name)
        return _configmap_data(obj) if obj else {}

    for src in ctr.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        if src.get("configMapRef"):
            data = configmap(src["configMapRef"].get("name", ""))
        elif src.get("secretRef"):
            data = secret(src["secretRef"].get("name", ""))
        else:
            continue
        for k, v in data.items():
            env[prefix + k] = v.decode(errors="replace")
    for e in ctr.get("env") or []:
        name = e.get("name")
        if not name:
            continue
        if "value" in e:
            env[name] = str(e.get("value") or "")
            continue
        ref = e.get("valueFrom") or {}
        if ref.get("fieldRef"):
            env[name] = _field(pod, ref["fieldRef"].get("fieldPath", ""))
        elif ref.get("secretKeyRef"):
            got = secret(ref["secretKeyRef"].get("name", "")).get(ref["secretKeyRef"].get("key", ""))
            if got is not None:
                env[name] = got.decode(errors="replace")
        elif ref.get("configMapKeyRef"):
            got = configmap(ref["configMapKeyRef"].get("name", "")).get(ref["configMapKeyRef"].get("key", ""))
            if got is not None:
                env[name] = got.decode(errors="replace")
        else:
            env[name] = ""
    return env


# ---------------------------------------------------------------------- command line (the real script's flags)
class _Exit(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # noqa: D102 - never exit the simulator
        raise Failure(f"{self.prog}: error: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # noqa: D102
        if status:
            raise Failure(message or f"{self.prog}: exited with {status}")
        raise _Exit()

    def _print_message(self, message: str, file: Any = None) -> None:
        pass


def parser(env: dict[str, str]) -> argparse.ArgumentParser:
    """The real script's command line; flags default to the container's ETCD_SNAPSHOT_* variables."""
    def e(name: str, default: str = "") -> str:
        return env.get(f"ETCD_SNAPSHOT_{name}", default)

    top = _Parser(prog="etcd-snapshot")
    common = _Parser(add_help=False)
    common.add_argument("--host-root", default=e("HOST_ROOT", "/host"))
    common.add_argument("--distribution", default=e("DISTRIBUTION"), choices=["", *DISTRIBUTIONS])
    common.add_argument("--snapshot-dir", default=e("SNAPSHOT_DIR"))
    common.add_argument("--endpoint", default=e("ENDPOINT", "https://127.0.0.1:2379"))
    for flag in ("cacert", "cert", "key", "etcdctl", "etcdutl"):  # accepted; the simulated etcd needs none
        common.add_argument(f"--{flag}", default=e(flag.upper()))
    common.add_argument("--s3-secret-dir", default=e("S3_SECRET_DIR"))
    for f in ("bucket", "endpoint", "region", "folder", "endpoint-ca"):
        common.add_argument(f"--s3-{f}", default="")
    no_record = _Parser(add_help=False)
    no_record.add_argument("--no-record", action="store_true",
                           default=e("NO_RECORD").lower() not in ("", "0", "false", "no"))
    checked = _Parser(add_help=False)
    checked.add_argument("--snapshot", required=True)
    checked.add_argument("--expect-cluster", required=True)
    checked.add_argument("--sha256", required=True)
    modes = top.add_subparsers(dest="mode", required=True)
    save_p = modes.add_parser("save", parents=[common, no_record])
    save_p.add_argument("--name", default=e("NAME"))
    save_p.add_argument("--node-name", default=e("NODE_NAME", env.get("SYSTEM_UPGRADE_NODE_NAME", "")))
    save_p.add_argument("--cluster", default=e("CLUSTER"))
    save_p.add_argument("--cluster-name", default=e("CLUSTER_NAME"))
    save_p.add_argument("--kubernetes-version", default=e("KUBERNETES_VERSION"))
    save_p.add_argument("--config-version", type=int, default=e("CONFIG_VERSION") or None)
    save_p.add_argument("--config-file", default=e("CONFIG_FILE"))
    save_p.add_argument("--kind", default=e("KIND", "manual"), choices=KINDS)
    save_p.add_argument("--timeout", type=float, default=float(e("TIMEOUT", "900")))
    save_p.add_argument("--inventory-page", type=int, default=int(e("INVENTORY_PAGE", "5000")))
    modes.add_parser("verify", parents=[common, checked])
    reset_p = modes.add_parser("cluster-reset", parents=[common, checked])
    reset_p.add_argument("--timeout", type=float, default=float(e("RESET_TIMEOUT", "1800")))
    modes.add_parser("rejoin", parents=[common])
    delete_p = modes.add_parser("delete", parents=[common, no_record])
    delete_p.add_argument("--snapshot", action="append", required=True)
    restore_p = modes.add_parser("restore", parents=[common])  # plain etcd into a data dir: not simulated
    restore_p.add_argument("--snapshot", default=e("SNAPSHOT"))
    list_p = modes.add_parser("list", parents=[common])
    list_p.add_argument("--no-local", action="store_true")
    return top


# ---------------------------------------------------------------------- S3 (worker threads only)
@dataclass
class S3Target:
    bucket: str
    endpoint: str
    region: str
    folder: str
    access_key: str
    secret_key: str
    endpoint_ca: bytes = b""  # PEM from the Secret (written to a temporary file for the TLS check only)

    @property
    def url(self) -> str:
        return self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"

    def key(self, filename: str) -> str:
        return f"{self.folder}/{filename}" if self.folder else filename

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.folder + '/' if self.folder else ''} at {self.url}"


class Bucket:
    """boto3 with short timeouts and errors turned into one-line reasons, like the image's."""

    def __init__(self, target: S3Target) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise Failure("an S3 target was given but boto3 is not installed") from None
        self.target = target
        self._ca = ""
        verify: bool | str = True
        if target.endpoint_ca.strip():
            fd, self._ca = tempfile.mkstemp(prefix="kubesim-s3-ca-", suffix=".pem")
            with os.fdopen(fd, "wb") as handle:
                handle.write(target.endpoint_ca)
            verify = self._ca
        aws = target.url.rstrip("/").endswith("amazonaws.com")
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                        s3={"addressing_style": "auto" if aws else "path"})
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=target.url, region_name=target.region, aws_access_key_id=target.access_key,
            aws_secret_access_key=target.secret_key, verify=verify, config=config)

    def __enter__(self) -> Bucket:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._ca:
            try:
                os.unlink(self._ca)
            except OSError:
                pass

    def call(self, what: str, method: str, missing_ok: bool = False, **kwargs: Any) -> Any:
        """One S3 call; with missing_ok, None when the key is not there."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            if missing_ok and code in S3_NOT_FOUND:
                return None
            raise Failure(f"S3 {what} in {self.target.where()} failed: {code}: {one_line(message)}") from None
        except BotoCoreError as exc:  # unreachable endpoint, TLS, timeouts
            raise Failure(f"S3 {what} in {self.target.where()} failed: {one_line(exc)}") from None

    def check(self) -> None:
        self.call("access check", "list_objects_v2", Bucket=self.target.bucket, Prefix=self.target.key(""), MaxKeys=1)

    def put(self, key: str, data: bytes) -> None:
        self.call(f"upload of {key}", "put_object", Bucket=self.target.bucket, Key=key, Body=data)

    def exists(self, key: str) -> bool:
        return self.call(f"look-up of {key}", "head_object", missing_ok=True, Bucket=self.target.bucket,
                         Key=key) is not None

    def read_json(self, key: str) -> dict[str, Any] | None:
        """A manifest in the bucket, None when it is not there."""
        answer = self.call(f"download of {key}", "get_object", missing_ok=True, Bucket=self.target.bucket, Key=key)
        if answer is None:
            return None
        try:
            return json.loads(answer["Body"].read())
        except ValueError:
            raise Failure(f"S3 object {key} in {self.target.where()} is not JSON") from None

    def get(self, key: str) -> bytes:
        answer = self.call(f"download of {key}", "get_object", Bucket=self.target.bucket, Key=key)
        return answer["Body"].read()

    def delete(self, key: str) -> None:
        self.call(f"delete of {key}", "delete_object", Bucket=self.target.bucket, Key=key)

    def manifests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: dict[str, str] = {}
        prefix = self.target.key("")
        while True:
            page = self.call("listing", "list_objects_v2", Bucket=self.target.bucket, Prefix=prefix, **token)
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith(MANIFEST_SUFFIX) and "/" not in key[len(prefix):]:
                    try:
                        manifest = json.loads(self.get(key))
                    except ValueError:
                        continue
                    manifest["location"] = {"type": "s3", "bucket": self.target.bucket, "key": key,
                                            "endpoint": self.target.url}
                    found.append(manifest)
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}


# ---------------------------------------------------------------------- one container run
Outcome = str  # "done", "busy" (a callback ends it) or the failure line


class Run:
    """One `corral/etcd-snapshot` container on one node."""

    def __init__(self, cluster: Cluster, pod: dict[str, Any], ctr: dict[str, Any], rt: NodeRuntime,
                 done: Callable[..., None]) -> None:
        self.cluster = cluster
        self.pod = pod
        self.container = ctr.get("name", "")
        self.ctr = ctr
        self.rt = rt
        self.done = done
        self.env: dict[str, str] = {}
        self.fs = ContainerFS(rt, [])

    # output and ending
    def out(self, text: str) -> None:
        from .upgrades import container_log

        container_log(self.cluster, self.pod, self.container, text)

    def ending(self, outcome: Outcome) -> None:
        """Hand a continuation's outcome to the kubelet's callback."""
        if outcome == "done":
            self.done(True)
        elif outcome != "busy":
            self.done(False, outcome)

    def step(self, fn: Callable[[], Outcome]) -> Outcome:
        try:
            return fn()
        except Failure as exc:
            return f"etcd-snapshot: {one_line(exc)}"
        except _Exit:
            return "done"
        except Exception as exc:  # a simulator bug ends the container rather than leaving it running forever
            log.exception("kubesim: etcd-snapshot container failed")
            return f"etcd-snapshot: {one_line(exc)}"

    def later(self, fn: Callable[[], Outcome], delay: float = 0.0) -> Outcome:
        """Continue on the loop thread (with the cluster lock), outside the current controller pass."""
        cluster = self.cluster

        def run() -> None:
            with cluster.lock:
                self.ending(self.step(fn))

        cluster.loop.call_later(delay, run)
        return "busy"

    def off_loop(self, work: Callable[[], Any], then: Callable[[Any], Outcome]) -> Outcome:
        """Run blocking work (S3) on a worker thread, then continue on the loop with its result."""
        cluster = self.cluster

        def worker() -> None:
            try:
                result: Any = work()
                failed = ""
            except Failure as exc:
                result, failed = None, f"etcd-snapshot: {one_line(exc)}"
            except Exception as exc:  # noqa: BLE001 - a reason, never a traceback on the loop
                result, failed = None, f"etcd-snapshot: {one_line(exc)}"

            def back() -> None:
                with cluster.lock:
                    self.ending(failed or self.step(lambda: then(result)))

            cluster.loop.call_later(0, back)

        threading.Thread(target=worker, name=f"kubesim-etcd-snapshot-{self.rt.name}", daemon=True).start()
        return "busy"

    # the node
    def distribution(self, o: argparse.Namespace) -> str:
        host = o.host_root
        if o.distribution:
            return o.distribution
        dist = distribution_of(self.cluster)
        if not dist or self.fs.host_path(host) is None:
            raise Failure(f"neither RKE2 nor k3s is installed under {host} (no etc/rancher/rke2 or etc/rancher/k3s)")
        return dist

    def directory(self, o: argparse.Namespace, dist: str) -> str:
        return o.snapshot_dir or posixpath.join(o.host_root, f"var/lib/rancher/{dist}/server/db/snapshots")

    def require_etcd(self, o: argparse.Namespace) -> None:
        """`etcdctl endpoint health` against the local member."""
        if not is_etcd_node(self.cluster, self.rt):
            raise Failure(f"etcd at {o.endpoint} failed (exit 1): etcd is not running on this node "
                          f"({self.rt.name}); Error: unhealthy cluster")

    def require_server(self, dist: str) -> str:
        """`systemctl stop <unit>` on the host: only servers have the unit."""
        unit = SERVICES[dist]
        if not is_etcd_node(self.cluster, self.rt):
            raise Failure(f"systemctl stop {unit} failed (exit 5): Failed to stop {unit}.service: "
                          f"Unit {unit}.service not loaded.")
        return unit

    def load_s3(self, o: argparse.Namespace) -> S3Target | None:
        """The Secret directory's files, overridden by ETCD_SNAPSHOT_S3_* and flags; None without a bucket."""
        values = dict.fromkeys(S3_FIELDS, "")
        ca_path = ""
        if o.s3_secret_dir:
            directory = o.s3_secret_dir
            if not self.fs.is_dir(directory):
                raise Failure(f"S3 secret directory {directory} does not exist")
            for f in S3_FIELDS:
                path = posixpath.join(directory, f)
                if self.fs.exists(path):
                    if f == "endpoint-ca":
                        ca_path = path
                    else:
                        values[f] = self.fs.read(path).decode(errors="replace").strip()
        for f in S3_FIELDS:
            value = self.env.get("ETCD_SNAPSHOT_S3_" + f.upper().replace("-", "_"), "")
            if value:
                values[f] = value
                if f == "endpoint-ca":
                    ca_path = ""
        for f in ("bucket", "endpoint", "region", "folder", "endpoint-ca"):
            value = getattr(o, "s3_" + f.replace("-", "_"), "")
            if value:
                values[f] = value
                if f == "endpoint-ca":
                    ca_path = ""
        if not values["bucket"]:
            return None
        if not values["access-key"] or not values["secret-key"]:
            raise Failure(f"S3 bucket {values['bucket']} given without access-key and secret-key")
        ca = b""
        if ca_path:
            ca = self.fs.read(ca_path)  # an empty endpoint-ca key: the system's CAs
        elif values["endpoint-ca"].lstrip().startswith("-----BEGIN"):
            ca = values["endpoint-ca"].encode()
        elif values["endpoint-ca"]:
            if not self.fs.exists(values["endpoint-ca"]):
                raise Failure(f"S3 endpoint CA {values['endpoint-ca']} does not exist")
            ca = self.fs.read(values["endpoint-ca"])
        return S3Target(bucket=values["bucket"], endpoint=values["endpoint"] or "s3.amazonaws.com",
                        region=values["region"] or "us-east-1", folder=values["folder"].strip("/"),
                        access_key=values["access-key"], secret_key=values["secret-key"], endpoint_ca=ca)

    def node_path(self, path: str) -> str:
        return self.fs.host_path(path) or path


def run_container(cluster: Cluster, pod: dict[str, Any], ctr: dict[str, Any], rt: NodeRuntime,
                  done: Callable[..., None]) -> Outcome:
    """Run the container's subcommand: 'done', 'busy' (then `done(ok, message)` is called) or a failure."""
    run = Run(cluster, pod, ctr, rt, done)

    def start() -> Outcome:
        run.env = container_env(cluster, pod, ctr)
        run.fs = container_fs(cluster, pod, ctr, rt)
        o = parser(run.env).parse_args([str(a) for a in ctr.get("args") or []])
        return MODES[o.mode](run, o)

    return run.step(start)


# ---------------------------------------------------------------------- ETCDSnapshotFile
def snapshot_files(manifest: dict[str, Any], local_dir: str | None) -> list[dict[str, Any]]:
    """The ETCDSnapshotFile objects of a snapshot (backups/README.md): local when local_dir, S3 when
    the manifest has a bucket copy."""
    name = manifest["name"]
    etcd_ = manifest.get("etcd") or {}
    spec_metadata = {
        "corral.io/cluster": str(manifest.get("cluster") or ""),
        "corral.io/kubernetes-version": str(manifest.get("kubernetes_version") or ""),
        "corral.io/config-version": "" if manifest.get("config_version") is None else str(manifest["config_version"]),
        "corral.io/kind": str(manifest.get("kind") or ""),
        "corral.io/sha256": str(manifest.get("sha256") or ""),
        "corral.io/revision": "" if etcd_.get("revision") is None else str(etcd_["revision"]),
    }
    status = {"size": str(manifest.get("size") or 0), "creationTime": manifest.get("created"), "readyToUse": True}

    def body(storage: str, node: str, location: str, s3: dict[str, str] | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"snapshotName": name, "nodeName": node, "location": location,
                                "metadata": dict(spec_metadata)}
        if s3 is not None:
            spec["s3"] = s3
        return {"apiVersion": f"{SNAPSHOT_FILES_GROUP}/{SNAPSHOT_FILES_VERSION}", "kind": "ETCDSnapshotFile",
                "metadata": {"name": object_name(storage, name),
                             "labels": {STORAGE_NODE: label_value(node), SNAPSHOT_LABEL: label_value(name)}},
                "spec": spec, "status": dict(status)}

    objects = []
    if local_dir is not None:
        objects.append(body("local", str(manifest.get("node") or ""), f"file://{local_dir.rstrip('/')}/{name}", None))
    s3 = manifest.get("s3")
    if isinstance(s3, dict) and s3.get("bucket"):
        folder = str(s3.get("folder") or "")
        key = s3.get("key") or (f"{folder}/{name}" if folder else name)
        objects.append(body("s3", "s3", f"s3://{s3['bucket']}/{key}",
                            {"bucket": s3["bucket"], "endpoint": str(s3.get("endpoint") or ""),
                             "region": str(s3.get("region") or ""), "folder": folder, "prefix": folder}))
    return objects


def _not_served(what: str) -> Failure:
    """What the image's API client reports for a resource the server does not serve."""
    return Failure(f"{what} failed: HTTP 404: the server could not find the requested resource")


def _snapshot_files_type(cluster: Cluster) -> Any:
    return cluster.types().lookup(SNAPSHOT_FILES_GROUP, SNAPSHOT_FILES_VERSION, "etcdsnapshotfiles")


def record(run: Run, objects: list[dict[str, Any]], replace: bool = True) -> None:
    """Create each object through the API server, or replace it on 409 (create only: leave it); the
    status through its subresource when the CRD has one. Says which, as the image does."""
    cluster = run.cluster
    with cluster.lock:
        for body in objects:
            name = body["metadata"]["name"]
            what = f"recording ETCDSnapshotFile {name}"
            srt = _snapshot_files_type(cluster)
            if srt is None:
                raise _not_served(what)
            status = body["status"]
            try:
                written = cluster.api.create(srt, None, copy.deepcopy(body))
                done = "created"
            except errors.ApiError as exc:
                if exc.code != 409:
                    raise Failure(f"{what} failed: HTTP {exc.code}: {exc.message}") from None
                if not replace:
                    run.out(f"etcd-snapshot: ETCDSnapshotFile {name} already there")
                    continue
                current = cluster.api.get(srt, "", name)
                update = copy.deepcopy(body)
                update["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion", "")
                written = cluster.api.update(srt, "", name, update)
                done = "replaced"
            if written.get("status") != status:  # Corral's CRD serves status as a subresource
                written = copy.deepcopy(written)
                written["status"] = status
                cluster.api.update(srt, "", name, written, subresource="status", check_rv=False)
            run.out(f"etcd-snapshot: ETCDSnapshotFile {name} {done}")


# ---------------------------------------------------------------------- save
def _config(run: Run, o: argparse.Namespace) -> Any:
    """The cluster's config document (config.json in the Plan's Secret), None when none is given."""
    if o.config_file:
        source = o.config_file
        try:
            text = run.fs.read(source).decode(errors="replace")
        except FileNotFoundError as exc:
            raise Failure(f"cannot read the cluster config document {source}: {exc}") from None
    else:
        source, text = "ETCD_SNAPSHOT_CONFIG", run.env.get("ETCD_SNAPSHOT_CONFIG", "")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Failure(f"the cluster config document {source} is not JSON: {exc}") from None


def _read_manifest(run: Run, path: str) -> dict[str, Any]:
    try:
        manifest = json.loads(run.fs.read(path))
    except (OSError, ValueError) as exc:
        raise Failure(f"manifest {path} is unreadable: {one_line(exc)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Failure(f"manifest {path} is not a {FORMAT} manifest")
    return manifest


def save(run: Run, o: argparse.Namespace) -> Outcome:
    """The archive, the bucket's copy, the manifest (in the bucket, then on disk: last), the records."""
    dist = run.distribution(o)
    node = o.node_name or run.rt.name
    name = check_name(o.name or f"{'on-demand' if o.kind == 'manual' else 'etcd-snapshot'}-{node}-{int(time.time())}")
    config = _config(run, o)
    target = run.load_s3(o)
    recording = not o.no_record
    directory = run.directory(o, dist)
    local_dir = run.node_path(directory)
    manifest_path = posixpath.join(directory, name + MANIFEST_SUFFIX)
    if run.fs.exists(manifest_path):
        manifest = _read_manifest(run, manifest_path)
        run.out(f"etcd-snapshot: {name} already saved in {directory}; nothing changed")
        if recording:
            record(run, snapshot_files(manifest, local_dir), replace=False)  # only what a failed run left out
        return "done"

    def local() -> Outcome:
        return _save_local(run, o, name, node, dist, directory, config, target, recording)

    if target is None:
        return local()

    def check() -> dict[str, Any] | None:
        with Bucket(target) as bucket:
            bucket.check()  # a wrong key or a missing bucket fails before etcd is touched
            return bucket.read_json(target.key(name + MANIFEST_SUFFIX))

    def checked(stored: dict[str, Any] | None) -> Outcome:
        if stored is None:
            return local()
        run.out(f"etcd-snapshot: {name} already saved in {target.where()}; nothing changed")
        if recording:
            record(run, snapshot_files(stored, None), replace=False)
        return "done"

    return run.off_loop(check, checked)


def _save_local(run: Run, o: argparse.Namespace, name: str, node: str, dist: str, directory: str, config: Any,
                target: S3Target | None, recording: bool) -> Outcome:
    cluster = run.cluster
    run.require_etcd(o)
    with cluster.lock:
        blob = etcd.snapshot(cluster)  # the cluster's own state, point in time
    status = etcd.verify(blob)  # `snapshot status`
    inventory = sorted([key, obj["metadata"].get("namespace") or "", obj["metadata"]["name"]]
                       for key, obj in status["objects"])
    final = posixpath.join(directory, name)
    run.fs.write(final, blob)
    manifest: dict[str, Any] = {
        "format": FORMAT, "name": name, "cluster": o.cluster, "cluster_name": o.cluster_name,
        "node": node, "distribution": dist, "kubernetes_version": o.kubernetes_version,
        "config_version": o.config_version, "config": config, "kind": o.kind, "created": now_iso(),
        "file": name, "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
        "etcd": {"revision": status["revision"], "hash": zlib.crc32(blob), "keys": len(status["objects"]),
                 "total_size": len(blob)},
        "inventory": inventory,
        "s3": {"bucket": target.bucket, "endpoint": target.url, "region": target.region, "folder": target.folder,
               "key": target.key(name)} if target else None,
    }
    data = (json.dumps(manifest, sort_keys=True) + "\n").encode()
    run.out(f"etcd-snapshot: saved {final} ({manifest['size']} bytes, revision {status['revision']}, "
            f"{len(inventory)} objects, sha256 {manifest['sha256']})")

    def finish() -> Outcome:
        manifest_path = final + MANIFEST_SUFFIX
        run.fs.write(manifest_path, data)  # last: a manifest on disk means saved, in the bucket too
        run.out(f"etcd-snapshot: wrote {manifest_path}")
        if recording:
            record(run, snapshot_files(manifest, run.node_path(directory)))
        return "done"

    if target is None:
        return finish()

    def upload() -> None:
        with Bucket(target) as bucket:
            bucket.put(target.key(name), blob)  # the archive first: a manifest in the bucket means complete
            bucket.put(target.key(name + MANIFEST_SUFFIX), data)

    def uploaded(_: Any) -> Outcome:
        run.out(f"etcd-snapshot: uploaded {name} and its manifest to {target.where()}")
        return finish()

    return run.off_loop(upload, uploaded)


# ---------------------------------------------------------------------- verify, cluster-reset
Checked = Callable[[dict[str, Any], bytes, str], Outcome]


def _verify_snapshot(run: Run, o: argparse.Namespace, then: Checked) -> Outcome:
    """The local copy, else the bucket's fetched into the snapshot directory (kept only when it checks out)."""
    name = check_name(o.snapshot)
    if not SHA256.match(o.sha256 or ""):
        raise Failure(f"--sha256 must be 64 hexadecimal digits, not {o.sha256!r}")
    directory = run.directory(o, run.distribution(o))
    path, manifest_path = posixpath.join(directory, name), posixpath.join(directory, name + MANIFEST_SUFFIX)
    if run.fs.exists(path) and run.fs.exists(manifest_path):
        manifest = _check_manifest(run, o, name, path, run.fs.read(path), run.fs.read(manifest_path), manifest_path)
        run.out(_verified(name, directory, manifest))
        return then(manifest, run.fs.read(path), path)
    target = run.load_s3(o)
    if target is None:
        missing = path if not run.fs.exists(path) else manifest_path
        raise Failure(f"snapshot {name} is missing: {missing} does not exist")

    def fetch() -> tuple[bytes, bytes]:
        with Bucket(target) as bucket:
            for filename in (name + MANIFEST_SUFFIX, name):
                if not bucket.exists(target.key(filename)):
                    raise Failure(f"snapshot {name} is missing: not in {directory}, and "
                                  f"s3://{target.bucket}/{target.key(filename)} does not exist")
            manifest_data = bucket.get(target.key(name + MANIFEST_SUFFIX))
            return bucket.get(target.key(name)), manifest_data

    def fetched(got: tuple[bytes, bytes]) -> Outcome:
        blob, manifest_data = got
        staged = posixpath.join(directory, f".{name}.fetch", name)
        manifest = _check_manifest(run, o, name, staged, blob, manifest_data, staged + MANIFEST_SUFFIX)
        run.fs.write(path, blob)  # checked: now it is the node's copy
        run.fs.write(manifest_path, manifest_data)
        run.out(_verified(name, target.where(), manifest))
        return then(manifest, blob, path)

    return run.off_loop(fetch, fetched)


def _verified(name: str, source: str, manifest: dict[str, Any]) -> str:
    return (f"etcd-snapshot: verified {name} from {source}: cluster {manifest.get('cluster')}, "
            f"{manifest.get('size')} bytes, sha256 {manifest.get('sha256')}, etcd revision "
            f"{(manifest.get('etcd') or {}).get('revision')}")


def _check_manifest(run: Run, o: argparse.Namespace, name: str, path: str, blob: bytes, manifest_data: bytes,
                    manifest_path: str) -> dict[str, Any]:
    """Format, name, cluster, SHA-256 and size against the manifest, then the archive itself."""
    try:
        manifest = json.loads(manifest_data)
    except ValueError as exc:
        raise Failure(f"manifest {manifest_path} is unreadable: {one_line(exc)}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Failure(f"manifest {manifest_path} is not a {FORMAT} manifest")
    if manifest.get("name") != name:
        raise Failure(f"manifest {manifest_path} is the manifest of {manifest.get('name')!r}, not of {name!r}")
    if o.expect_cluster and manifest.get("cluster") != o.expect_cluster:
        raise Failure(f"snapshot {name} belongs to cluster {manifest.get('cluster')!r}, not {o.expect_cluster!r}")
    if str(manifest.get("sha256") or "").lower() != o.sha256.lower():
        raise Failure(f"snapshot {name} has sha256 {manifest.get('sha256')}, not the expected {o.sha256.lower()}")
    if len(blob) != manifest.get("size"):
        raise Failure(f"snapshot {path} is {len(blob)} bytes, its manifest says {manifest.get('size')}: "
                      "truncated or replaced")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.get("sha256"):
        raise Failure(f"snapshot {path} is corrupt: sha256 {digest} differs from the manifest's "
                      f"{manifest.get('sha256')}")
    try:
        etcd.verify(blob)  # `etcdutl snapshot status`
    except etcd.SnapshotError as exc:
        raise Failure(f"snapshot {name} is not a readable etcd snapshot: etcdctl snapshot status failed "
                      f"(exit 1): {one_line(exc)}") from None
    return manifest


def verify(run: Run, o: argparse.Namespace) -> Outcome:
    def done(manifest: dict[str, Any], _blob: bytes, _path: str) -> Outcome:
        run.out(json.dumps(manifest, sort_keys=True, separators=(",", ":")))  # the last line: the portal reads it
        return "done"

    return _verify_snapshot(run, o, done)


def cluster_reset(run: Run, o: argparse.Namespace) -> Outcome:
    """Verify, then RKE2/k3s's documented restore: stop the server, --cluster-reset from the file, start it."""
    dist = run.distribution(o)

    def reset(manifest: dict[str, Any], blob: bytes, path: str) -> Outcome:
        unit = run.require_server(dist)
        run.out(f"etcd-snapshot: stopped {unit}")
        run.out(f"etcd-snapshot: running {dist} server --cluster-reset "
                f"--cluster-reset-restore-path={run.node_path(path)}")

        def restore() -> Outcome:
            try:
                etcd.restore(run.cluster, blob)  # this pod, its Job and its Plan are gone now
            except etcd.SnapshotError as exc:
                raise Failure(f"{dist} server --cluster-reset failed (exit 1): {one_line(exc)}; "
                              f"{unit} started again") from None
            run.out(f"etcd-snapshot: etcd reset to {manifest['name']} "
                    f"(revision {(manifest.get('etcd') or {}).get('revision')})")
            run.out(f"etcd-snapshot: started {unit}")
            return "done"

        return run.later(restore)  # outside the controller pass: the store is replaced under it

    return _verify_snapshot(run, o, reset)


# ---------------------------------------------------------------------- rejoin
def rejoin(run: Run, o: argparse.Namespace) -> Outcome:
    """Stop the server, move its etcd aside, start it: NotReady for `kubelet_restart`, then it joins."""
    dist = run.distribution(o)
    unit = run.require_server(dist)
    cluster, rt = run.cluster, run.rt
    kubelets = cluster.controllers.kubelets
    kubelets.report_status(rt, ready=False, message=f"kubelet is restarting: {unit} rejoins the restored etcd")
    rt.upgrading = True
    cluster.log("etcd", f"node {rt.name}: {unit} restarting to rejoin the restored etcd", node=rt.name)
    run.out(f"etcd-snapshot: stopped {unit}")
    data = f"/var/lib/rancher/{dist}/server/db/etcd"
    moved = rt.disk.files(data)
    if moved:
        aside = f"/var/lib/rancher/{dist}/server/db/etcd-old-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        for path, content in moved.items():
            rt.disk.write(aside + path[len(data):], content)
            rt.disk.remove(path)
        run.out(f"etcd-snapshot: moved {data} aside to {posixpath.basename(aside)}")
    else:
        run.out(f"etcd-snapshot: no {data} to move aside")

    def back() -> Outcome:
        if rt.upgrading:
            rt.upgrading = False
            kubelets.renew(rt)
            kubelets.report_status(rt, ready=True)
            node = cluster.store.get("nodes", "", rt.name)
            if node is not None:
                cluster.event(node, "Normal", "Starting", "Starting kubelet.", "kubelet", rt.name)
            cluster.kick()
        run.out(f"etcd-snapshot: started {unit}; it joins the restored etcd")
        return "done"

    return run.later(back, cluster.timings.kubelet_restart)


# ---------------------------------------------------------------------- delete, list
def delete(run: Run, o: argparse.Namespace) -> Outcome:
    """The files on this node and in the bucket, and the ETCDSnapshotFile objects; what is gone already is fine."""
    names = [check_name(n) for n in o.snapshot]
    target = run.load_s3(o)
    directory = run.directory(o, run.distribution(o))
    for name in names:
        removed = [f for f in (name + MANIFEST_SUFFIX, name)  # the manifest first: no half snapshot looks whole
                   if run.fs.remove(posixpath.join(directory, f))]
        run.out(f"etcd-snapshot: removed {' and '.join(removed)} from {directory}" if removed
                else f"etcd-snapshot: {name} is not in {directory}")

    def unrecord(_: Any = None) -> Outcome:
        if o.no_record:
            return "done"
        cluster = run.cluster
        with cluster.lock:
            srt = _snapshot_files_type(cluster)
            for name in names:
                for storage in ("local", "s3"):
                    obj = object_name(storage, name)
                    gone = False
                    if srt is not None:
                        try:
                            cluster.api.delete(srt, "", obj, {})
                            gone = True
                        except errors.ApiError as exc:
                            if exc.code != 404:
                                raise Failure(f"deleting ETCDSnapshotFile {obj} failed: HTTP {exc.code}: "
                                              f"{exc.message}") from None
                    run.out(f"etcd-snapshot: ETCDSnapshotFile {obj} {'deleted' if gone else 'was not there'}")
        return "done"

    if target is None:
        return unrecord()

    def remove_objects() -> None:
        with Bucket(target) as bucket:
            for name in names:
                for filename in (name + MANIFEST_SUFFIX, name):
                    bucket.delete(target.key(filename))

    def removed_objects(_: Any) -> Outcome:
        for name in names:
            run.out(f"etcd-snapshot: deleted {name} and its manifest from {target.where()}")
        return unrecord()

    return run.off_loop(remove_objects, removed_objects)


def list_snapshots(run: Run, o: argparse.Namespace) -> Outcome:
    """Manifests on this node and in the bucket."""
    found: list[dict[str, Any]] = []
    if not o.no_local:
        directory = run.directory(o, run.distribution(o))
        for entry in run.fs.listdir(directory):
            if not entry.endswith(MANIFEST_SUFFIX):
                continue
            try:
                manifest = json.loads(run.fs.read(posixpath.join(directory, entry)))
            except (OSError, ValueError):
                continue
            manifest["location"] = {"type": "local", "path": posixpath.join(directory, manifest.get("file", ""))}
            found.append(manifest)
    target = run.load_s3(o)

    def show(remote: list[dict[str, Any]] | None) -> Outcome:
        run.out(json.dumps(found + (remote or []), indent=2, sort_keys=True))
        return "done"

    if target is None:
        return show(None)

    def listing() -> list[dict[str, Any]]:
        with Bucket(target) as bucket:
            return bucket.manifests()

    return run.off_loop(listing, show)


def restore(run: Run, o: argparse.Namespace) -> Outcome:
    raise Failure("restore into a new etcd data dir is not simulated: kubesim plays cluster-reset")


MODES: dict[str, Callable[[Run, argparse.Namespace], Outcome]] = {
    "save": save, "verify": verify, "cluster-reset": cluster_reset, "rejoin": rejoin, "delete": delete,
    "list": list_snapshots, "restore": restore,
}
