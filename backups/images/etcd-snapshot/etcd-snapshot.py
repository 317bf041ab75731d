#!/usr/bin/env python3
"""Corral etcd-snapshot: save, verify, restore and delete etcd snapshots on an RKE2/k3s server node.

Run by system-upgrade-controller as the upgrade container of a Plan on an etcd (server) node, with
the host's root mounted at /host (the same way as corral/node-config). backups/README.md is the
contract with the portal and the simulator:

    etcd-snapshot save    --name NAME --cluster UID --cluster-name N --kubernetes-version V
                          --config-version C --kind manual|recurring [--config-file FILE]
                          [--node-name NODE] [--no-record]
    etcd-snapshot verify  --snapshot NAME --expect-cluster UID --sha256 HEX
    etcd-snapshot cluster-reset --snapshot NAME --expect-cluster UID --sha256 HEX [--timeout S]
    etcd-snapshot rejoin
    etcd-snapshot delete  --snapshot NAME [--snapshot NAME ...] [--no-record]
    etcd-snapshot restore --snapshot NAME|PATH --data-dir DIR [--name MEMBER] [--initial-cluster ...]
                          [--expect-cluster UID]       (plain etcd: restore into a new data dir)
    etcd-snapshot list    [--no-local]

A snapshot is two files side by side, on the node's disk (default
/var/lib/rancher/<rke2|k3s>/server/db/snapshots, where RKE2 and k3s keep their own) and, with an S3
target, in the bucket under the folder: ``<name>`` (what ``etcdctl snapshot save`` wrote) and
``<name>.manifest.json`` (cluster, Kubernetes version, config version and document, etcd revision,
size, SHA-256, time, manual or recurring, and the inventory: every object in the snapshot as
``[resource, namespace, name]``). The manifest is written last (in the bucket, then on disk), so a
manifest means a complete snapshot; a save whose manifest exists says "already saved" and changes
nothing. verify, cluster-reset and restore refuse any file whose size or SHA-256 differ before
touching anything.

After save, the snapshot is recorded as ETCDSnapshotFile objects (``local-NAME`` and, with S3,
``s3-NAME``) through the Kubernetes API with the pod's service account (KUBERNETES_SERVICE_HOST/PORT,
/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}; ETCD_SNAPSHOT_KUBE_API (https only),
ETCD_SNAPSHOT_KUBE_TOKEN and ETCD_SNAPSHOT_KUBE_CA override them); delete removes them. --no-record
(or ETCD_SNAPSHOT_NO_RECORD=1) leaves the API alone.

cluster-reset and rejoin act on the host through ``chroot <host-root>``: systemctl stop/start of
rke2-server or k3s, and the host's own ``rke2``/``k3s`` binary for ``server --cluster-reset``.

etcd is reached as RKE2/k3s expose it to their own tools: https://127.0.0.1:2379 with the client
certificate under /var/lib/rancher/<dist>/server/tls/etcd/ (server-ca.crt, server-client.crt,
server-client.key). Most flags have an ETCD_SNAPSHOT_* environment variable.

S3 settings come from a Kubernetes Secret mounted as a directory (--s3-secret-dir, files bucket,
endpoint, region, folder, access-key, secret-key, endpoint-ca) and/or ETCD_SNAPSHOT_S3_* variables,
which win. The keys are read only from files or the environment, never flags, so they stay out of
process listings. Every failure exits 1 with one line on stderr that a Job's log shows as the reason.

Only the standard library, plus boto3 when an S3 target is given.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

FORMAT = "corral.etcd-snapshot/v1"
MANIFEST_SUFFIX = ".manifest.json"
DISTRIBUTIONS = ("rke2", "k3s")
SERVICES = {"rke2": "rke2-server", "k3s": "k3s"}  # the server units RKE2's and k3s's installers create
KINDS = ("manual", "recurring")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
S3_FIELDS = ("bucket", "endpoint", "region", "folder", "access-key", "secret-key", "endpoint-ca")
S3_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SNAPSHOT_FILES = "/apis/k3s.cattle.io/v1/etcdsnapshotfiles"
STORAGE_LABEL = "etcd.k3s.cattle.io/snapshot-storage-node"
SNAPSHOT_LABEL = "corral.io/snapshot"

# --- how the API server lays out its etcd keys ------------------------------------------------
# /registry/<prefix>/[<namespace>/]<name>. The prefix is the resource's plural without its group
# (kube-apiserver's DefaultStorageFactory), except SpecialDefaultResourcePrefixes (minions,
# controllers, services/specs, services/endpoints, ingress, podsecuritypolicy); resources of
# CRDs and of the apiextensions/apiregistration servers live under /registry/<group>/<plural>/.
REGISTRY = "/registry/"
REGISTRY_END = "/registry0"  # "/" + 1: the end of the /registry/ range
SPECIAL_PREFIXES = {"minions": "nodes", "controllers": "replicationcontrollers",
                    "ingress": "ingresses.networking.k8s.io", "podsecuritypolicy": "podsecuritypolicies.policy"}
SERVICES_PREFIXES = {"specs": "services", "endpoints": "endpoints"}  # /registry/services/<specs|endpoints>/
BUILTIN_GROUPS = {
    "apps": ("deployments", "replicasets", "statefulsets", "daemonsets", "controllerrevisions"),
    "batch": ("jobs", "cronjobs"),
    "autoscaling": ("horizontalpodautoscalers",),
    "policy": ("poddisruptionbudgets",),
    "networking.k8s.io": ("networkpolicies", "ingressclasses", "ipaddresses", "servicecidrs"),
    "rbac.authorization.k8s.io": ("roles", "rolebindings", "clusterroles", "clusterrolebindings"),
    "storage.k8s.io": ("storageclasses", "volumeattachments", "csinodes", "csidrivers", "csistoragecapacities",
                       "volumeattributesclasses"),
    "scheduling.k8s.io": ("priorityclasses",),
    "coordination.k8s.io": ("leases", "leasecandidates"),
    "admissionregistration.k8s.io": ("mutatingwebhookconfigurations", "validatingwebhookconfigurations",
                                     "validatingadmissionpolicies", "validatingadmissionpolicybindings",
                                     "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"),
    "certificates.k8s.io": ("certificatesigningrequests", "clustertrustbundles"),
    "node.k8s.io": ("runtimeclasses",),
    "discovery.k8s.io": ("endpointslices",),
    "flowcontrol.apiserver.k8s.io": ("flowschemas", "prioritylevelconfigurations"),
    "settings.k8s.io": ("podpresets",),
    "auditregistration.k8s.io": ("auditsinks",),
    "internal.apiserver.k8s.io": ("storageversions",),
    "storagemigration.k8s.io": ("storageversionmigrations",),
    "resource.k8s.io": ("resourceclaims", "resourceclaimtemplates", "deviceclasses", "resourceslices",
                        "podschedulingcontexts", "resourceclasses"),
}
BUILTIN_PREFIXES = {**{plural: f"{plural}.{group}" for group, plurals in BUILTIN_GROUPS.items() for plural in plurals},
                    **SPECIAL_PREFIXES}
INTERNAL_PREFIXES = ("ranges", "masterleases")  # IP/port allocator bitmaps and apiserver leases: not objects


class SnapshotError(Exception):
    """A failure with a reason meant for the job log (one line, no traceback)."""


def env(name: str, default: str = "") -> str:
    return os.environ.get(f"ETCD_SNAPSHOT_{name}", default)


def env_flag(name: str) -> bool:
    return env(name).lower() not in ("", "0", "false", "no")


def one_line(text: str) -> str:
    """Job logs show the last line of stderr as the reason: keep the reason on one."""
    return " ".join(str(text).split())


def tail(text: str, limit: int = 500) -> str:
    """The end of a tool's output on one line: RKE2/k3s log a great deal before the line that matters."""
    joined = "; ".join(one_line(line) for line in text.splitlines() if line.strip())
    return joined if len(joined) <= limit else "…" + joined[-limit:]


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_name(name: str) -> str:
    if not name or not NAME.match(name) or name.endswith(MANIFEST_SUFFIX):
        raise SnapshotError(f"invalid snapshot name {name!r}")
    return name


# --- the node ---------------------------------------------------------------------------------

def detect(host: Path, wanted: str = "") -> str:
    """rke2 or k3s: asked for, or found from the host's config or data directory."""
    if wanted:
        if wanted not in DISTRIBUTIONS:
            raise SnapshotError(f"unknown distribution {wanted!r} (rke2 or k3s)")
        return wanted
    for name in DISTRIBUTIONS:
        if (host / "etc/rancher" / name).is_dir() or (host / "var/lib/rancher" / name / "server").is_dir():
            return name
    raise SnapshotError(f"neither RKE2 nor k3s is installed under {host} (no etc/rancher/rke2 or etc/rancher/k3s)")


def detect_quietly(host: Path) -> str:
    """The distribution when the host shows one, else "" (paths given by flags need none)."""
    try:
        return detect(host)
    except SnapshotError:
        return ""


def host_path(host: Path, path: str) -> Path:
    """A node path (/var/lib/...) as seen from the container, under the host's root."""
    return host / path.lstrip("/")


def seen_from_host(host: Path, path: Path) -> str | None:
    """A container path under the host's root as the host sees it (/var/lib/...), None when outside it."""
    try:
        relative = path.resolve().relative_to(host.resolve())
    except ValueError:
        return None
    return "/" if str(relative) == "." else "/" + relative.as_posix()


def host_command(host: Path, args: list[str], what: str, timeout: float = 300) -> str:
    """A command on the host (chroot into its root); its stderr's last lines become the reason."""
    try:
        done = subprocess.run(["chroot", str(host), *args], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except FileNotFoundError:
        raise SnapshotError(f"{what}: chroot not found") from None
    except subprocess.TimeoutExpired:
        raise SnapshotError(f"{what}: not done in {timeout:.0f}s") from None
    if done.returncode != 0:
        raise SnapshotError(f"{what} failed (exit {done.returncode}): {tail(done.stderr or done.stdout) or 'no output'}")
    return done.stdout


def server_binary(host: Path, distribution: str) -> str:
    """The host's rke2/k3s binary: where the installers put it, else left to the host's PATH."""
    for directory in ("usr/local/bin", "usr/bin", "opt/rke2/bin"):
        if (host / directory / distribution).is_file():
            return f"/{directory}/{distribution}"
    return distribution


@dataclass
class Etcd:
    """How to reach etcd and which tools to call."""

    endpoint: str
    cacert: str
    cert: str
    key: str
    etcdctl: str
    etcdutl: str  # etcd 3.5+ moved snapshot status/restore to etcdutl; etcdctl does them on 3.4

    def client_args(self) -> list[str]:
        args = [self.etcdctl, f"--endpoints={self.endpoint}", "--dial-timeout=5s"]
        if self.endpoint.startswith("https://"):
            for flag, path in (("--cacert", self.cacert), ("--cert", self.cert), ("--key", self.key)):
                if not path or not Path(path).is_file():
                    raise SnapshotError(f"etcd TLS file for {flag} not found: {path or '(none given)'}")
                args.append(f"{flag}={path}")
        return args

    def offline(self) -> list[str]:
        return [self.etcdutl or self.etcdctl]


def run(args: list[str], what: str, timeout: float = 600) -> str:
    """Run a tool; its stderr becomes the reason when it fails."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(os.environ, ETCDCTL_API="3"))
    except FileNotFoundError:
        raise SnapshotError(f"{what}: {args[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise SnapshotError(f"{what}: no answer in {timeout:.0f}s") from None
    if done.returncode != 0:
        # etcd's clients log JSON lines to stderr; the plain lines are the ones that say what went wrong.
        lines = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines()]
        detail = "; ".join(line for line in lines if line and not line.startswith("{"))
        raise SnapshotError(f"{what} failed (exit {done.returncode}): {one_line(detail)[:400]}")
    return done.stdout


def snapshot_status(etcd: Etcd, path: Path) -> dict[str, Any]:
    """`etcdctl snapshot status -w json`: fails on a file etcd cannot read."""
    out = run([*etcd.offline(), "snapshot", "status", str(path), "-w", "json"], "etcdctl snapshot status")
    try:
        status = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise SnapshotError(f"etcdctl snapshot status printed no JSON: {one_line(out)[:200]}") from None
    return status


def inventory_item(key: str) -> tuple[str, str, str] | None:
    """``/registry/deployments/default/web`` → ``("deployments.apps", "default", "web")``; None for
    keys that are no API object (allocator ranges, apiserver leases) or not the API server's."""
    if not key.startswith(REGISTRY):
        return None
    parts = key[len(REGISTRY):].split("/")
    prefix = parts[0]
    if prefix in INTERNAL_PREFIXES:
        return None
    if prefix == "services" and len(parts) > 1 and parts[1] in SERVICES_PREFIXES:
        resource, rest = SERVICES_PREFIXES[parts[1]], parts[2:]
    elif "." in prefix:  # a group: /registry/<group>/<plural>/[<namespace>/]<name>
        if len(parts) < 3:
            return None
        resource, rest = f"{parts[1]}.{prefix}", parts[2:]
    else:
        resource, rest = BUILTIN_PREFIXES.get(prefix, prefix), parts[1:]
    if not resource or any(not part for part in rest):
        return None
    if len(rest) == 1:
        return resource, "", rest[0]
    if len(rest) == 2:
        return resource, rest[0], rest[1]
    return None


def read_inventory(etcd: Etcd, revision: int | None, page: int) -> list[list[str]]:
    """Every object under /registry/ at the snapshot's revision, a page of keys at a time."""
    keys: list[str] = []
    start = REGISTRY
    while True:
        args = [*etcd.client_args(), "--command-timeout=60s", "get", start, REGISTRY_END, "--keys-only",
                f"--limit={page}", "-w", "json"]
        if revision:
            args.append(f"--rev={revision}")
        out = run(args, f"etcdctl get {REGISTRY} (inventory at revision {revision})", 300)
        try:
            answer = json.loads(out)
            batch = [base64.b64decode(kv["key"]).decode("utf-8", "replace") for kv in answer.get("kvs") or []]
        except (ValueError, KeyError, TypeError):
            raise SnapshotError(f"etcdctl get printed no JSON: {one_line(out)[:200]}") from None
        more = bool(answer.get("more")) and bool(batch)
        if start != REGISTRY and batch and batch[0] == start:
            batch = batch[1:]  # a page starts at the previous page's last key
        keys.extend(batch)
        if not more or not batch:
            break
        start = keys[-1]
    items = {item for key in keys if (item := inventory_item(key)) is not None}
    return [list(item) for item in sorted(items)]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Readers (and k3s/RKE2's own listing) never see half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- S3 ---------------------------------------------------------------------------------------

@dataclass
class S3Target:
    """An S3-compatible bucket, as handed to the node in a Secret."""

    bucket: str
    endpoint: str
    region: str
    folder: str
    access_key: str
    secret_key: str
    endpoint_ca: str

    @property
    def url(self) -> str:
        return self.endpoint if "://" in self.endpoint else f"https://{self.endpoint}"

    def key(self, filename: str) -> str:
        return f"{self.folder}/{filename}" if self.folder else filename

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.folder + '/' if self.folder else ''} at {self.url}"


def load_s3(options: argparse.Namespace) -> S3Target | None:
    """Secret directory files, overridden by ETCD_SNAPSHOT_S3_* and flags; None when no bucket."""
    values = dict.fromkeys(S3_FIELDS, "")
    secret_dir = options.s3_secret_dir
    if secret_dir:
        directory = Path(secret_dir)
        if not directory.is_dir():
            raise SnapshotError(f"S3 secret directory {directory} does not exist")
        for field in S3_FIELDS:
            file = directory / field
            if file.is_file():
                values[field] = str(file) if field == "endpoint-ca" else file.read_text().strip()
    for field in S3_FIELDS:
        value = env("S3_" + field.upper().replace("-", "_"))
        if value:
            values[field] = value
    for field in ("bucket", "endpoint", "region", "folder", "endpoint-ca"):
        value = getattr(options, "s3_" + field.replace("-", "_"), "")
        if value:
            values[field] = value
    if not values["bucket"]:
        return None
    if not values["access-key"] or not values["secret-key"]:
        raise SnapshotError(f"S3 bucket {values['bucket']} given without access-key and secret-key")
    ca = values["endpoint-ca"]
    if ca.lstrip().startswith("-----BEGIN"):  # PEM text in an environment variable
        handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
        handle.write(ca)
        handle.close()
        ca = handle.name
    elif ca and Path(ca).is_file() and not Path(ca).read_text().strip():
        ca = ""  # the Secret's endpoint-ca key is there but empty: the system's CAs
    elif ca and not Path(ca).is_file():
        raise SnapshotError(f"S3 endpoint CA {ca} does not exist")
    return S3Target(bucket=values["bucket"], endpoint=values["endpoint"] or "s3.amazonaws.com",
                    region=values["region"] or "us-east-1", folder=values["folder"].strip("/"),
                    access_key=values["access-key"], secret_key=values["secret-key"], endpoint_ca=ca)


class Bucket:
    """boto3 with short timeouts and errors turned into one-line reasons."""

    def __init__(self, target: S3Target) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise SnapshotError("an S3 target was given but boto3 is not installed") from None
        self.target = target
        aws = target.url.rstrip("/").endswith("amazonaws.com")
        config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                        s3={"addressing_style": "auto" if aws else "path"})
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=target.url, region_name=target.region, aws_access_key_id=target.access_key,
            aws_secret_access_key=target.secret_key, verify=target.endpoint_ca or True, config=config)

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
            raise SnapshotError(f"S3 {what} in {self.target.where()} failed: {code}: {one_line(message)}") from None
        except BotoCoreError as exc:  # unreachable endpoint, TLS, timeouts
            raise SnapshotError(f"S3 {what} in {self.target.where()} failed: {one_line(str(exc))}") from None

    def check(self) -> None:
        """A cheap authenticated call first: a wrong key or a missing bucket fails before etcd is touched."""
        self.call("access check", "list_objects_v2", Bucket=self.target.bucket,
                  Prefix=self.target.key(""), MaxKeys=1)

    def exists(self, key: str) -> bool:
        return self.call(f"look-up of {key}", "head_object", missing_ok=True, Bucket=self.target.bucket,
                         Key=key) is not None

    def upload(self, path: Path, key: str) -> None:
        with path.open("rb") as body:
            self.call(f"upload of {key}", "put_object", Bucket=self.target.bucket, Key=key, Body=body)

    def put(self, data: bytes, key: str) -> None:
        self.call(f"upload of {key}", "put_object", Bucket=self.target.bucket, Key=key, Body=data)

    def read_json(self, key: str) -> dict[str, Any] | None:
        """A manifest in the bucket, None when it is not there."""
        answer = self.call(f"download of {key}", "get_object", missing_ok=True, Bucket=self.target.bucket, Key=key)
        if answer is None:
            return None
        try:
            return json.loads(answer["Body"].read())
        except ValueError:
            raise SnapshotError(f"S3 object {key} in {self.target.where()} is not JSON") from None

    def download(self, key: str, path: Path) -> None:
        answer = self.call(f"download of {key}", "get_object", Bucket=self.target.bucket, Key=key)
        with path.open("wb") as handle:
            for block in iter(lambda: answer["Body"].read(1 << 20), b""):
                handle.write(block)

    def delete(self, key: str) -> None:
        """Deleting a key that is not there is no error in S3."""
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
                    body = self.call(f"download of {key}", "get_object", Bucket=self.target.bucket, Key=key)
                    try:
                        manifest = json.loads(body["Body"].read())
                    except ValueError:
                        continue
                    manifest["location"] = {"type": "s3", "bucket": self.target.bucket, "key": key,
                                            "endpoint": self.target.url}
                    found.append(manifest)
            if not page.get("IsTruncated"):
                return found
            token = {"ContinuationToken": page["NextContinuationToken"]}


# --- the Kubernetes API (ETCDSnapshotFile) ----------------------------------------------------

def object_name(storage: str, name: str) -> str:
    """``local-NAME`` / ``s3-NAME``, made a valid object name when NAME cannot be one as it is."""
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


class KubeAPI:
    """The cluster's API as the pod's service account, urllib only."""

    def __init__(self, url: str, token: str, context: ssl.SSLContext) -> None:
        self.url, self.token, self.context = url.rstrip("/"), token, context
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))

    @classmethod
    def from_environment(cls) -> KubeAPI:
        url = env("KUBE_API")
        if not url:
            host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise SnapshotError("cannot record ETCDSnapshotFile objects: no KUBERNETES_SERVICE_HOST (not in a "
                                    "pod) and no ETCD_SNAPSHOT_KUBE_API; --no-record leaves them out")
            url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        if not url.startswith("https://"):
            raise SnapshotError(f"the Kubernetes API must be reached over https, not {url}")
        token = env("KUBE_TOKEN")
        if not token:
            try:
                token = (SERVICE_ACCOUNT / "token").read_text().strip()
            except OSError as exc:
                raise SnapshotError(f"no service account token to record ETCDSnapshotFile objects: {exc}") from None
        ca = env("KUBE_CA") or (str(SERVICE_ACCOUNT / "ca.crt") if (SERVICE_ACCOUNT / "ca.crt").is_file() else "")
        try:
            context = ssl.create_default_context(cafile=ca or None)
        except (OSError, ssl.SSLError) as exc:
            raise SnapshotError(f"cannot load the Kubernetes API's CA {ca}: {one_line(str(exc))}") from None
        return cls(url, token, context)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, the answer); the answer of a refusal holds the API's message."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=30) as answer:
                status, text = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("message") or text
            except (ValueError, AttributeError):
                message = text
            return exc.code, {"message": one_line(message or exc.reason)[:400]}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SnapshotError(f"the Kubernetes API at {self.url} is unreachable: {one_line(str(reason))}") from None
        try:
            return status, json.loads(text or b"{}")
        except ValueError:
            return status, {}

    def refused(self, what: str, status: int, answer: dict[str, Any]) -> SnapshotError:
        return SnapshotError(f"{what} failed: HTTP {status}: {answer.get('message') or 'no message'}")

    def record(self, body: dict[str, Any], replace: bool = True) -> str:
        """Create an ETCDSnapshotFile, or replace it on 409 (create only: leave it); says which."""
        name = body["metadata"]["name"]
        path = f"{SNAPSHOT_FILES}/{name}"
        what = f"recording ETCDSnapshotFile {name}"
        for _ in range(3):
            status, answer = self.request("POST", SNAPSHOT_FILES, body)
            done = "created"
            if status == 409:
                if not replace:
                    return "already there"
                status, current = self.request("GET", path)
                if status == 404:
                    continue  # deleted in between: create it again
                if status != 200:
                    raise self.refused(what, status, current)
                update = json.loads(json.dumps(body))
                update["metadata"]["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion", "")
                status, answer = self.request("PUT", path, update)
                if status in (404, 409):
                    continue  # deleted or changed in between
                done = "replaced"
            if status not in (200, 201):
                raise self.refused(what, status, answer)
            if body.get("status") and answer.get("status") != body["status"]:
                # Corral's own CRD serves status as a subresource (k3s's does not): write it there.
                answer["status"] = body["status"]
                status, written = self.request("PUT", f"{path}/status", answer)
                if status not in (200, 404):  # 404: no status subresource, the write above kept it
                    raise self.refused(f"{what} (status)", status, written)
            return done
        raise SnapshotError(f"{what} failed: it kept changing under us (HTTP 409)")

    def delete(self, name: str) -> bool:
        """Delete an ETCDSnapshotFile; False when there was none."""
        status, answer = self.request("DELETE", f"{SNAPSHOT_FILES}/{name}")
        if status == 404:
            return False
        if status not in (200, 202):
            raise self.refused(f"deleting ETCDSnapshotFile {name}", status, answer)
        return True


def snapshot_files(manifest: dict[str, Any], local_dir: str | None) -> list[dict[str, Any]]:
    """The ETCDSnapshotFile objects of a snapshot (README "ETCDSnapshotFile"): local when local_dir, S3
    when the manifest has a bucket copy."""
    name = manifest["name"]
    etcd = manifest.get("etcd") or {}
    spec_metadata = {
        "corral.io/cluster": str(manifest.get("cluster") or ""),
        "corral.io/kubernetes-version": str(manifest.get("kubernetes_version") or ""),
        "corral.io/config-version": "" if manifest.get("config_version") is None else str(manifest["config_version"]),
        "corral.io/kind": str(manifest.get("kind") or ""),
        "corral.io/sha256": str(manifest.get("sha256") or ""),
        "corral.io/revision": "" if etcd.get("revision") is None else str(etcd["revision"]),
    }
    status = {"size": str(manifest.get("size") or 0), "creationTime": manifest.get("created"), "readyToUse": True}

    def body(storage: str, node: str, location: str, s3: dict[str, str] | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"snapshotName": name, "nodeName": node, "location": location,
                                "metadata": dict(spec_metadata)}
        if s3 is not None:
            spec["s3"] = s3
        return {"apiVersion": "k3s.cattle.io/v1", "kind": "ETCDSnapshotFile",
                "metadata": {"name": object_name(storage, name),
                             "labels": {STORAGE_LABEL: label_value(node), SNAPSHOT_LABEL: label_value(name)}},
                "spec": spec, "status": dict(status)}

    objects = []
    if local_dir is not None:
        node = str(manifest.get("node") or "")
        objects.append(body("local", node, f"file://{local_dir.rstrip('/')}/{name}", None))
    s3 = manifest.get("s3")
    if isinstance(s3, dict) and s3.get("bucket"):
        folder = str(s3.get("folder") or "")
        key = s3.get("key") or (f"{folder}/{name}" if folder else name)
        # folder is Corral's word (README); prefix is what k3s's own ETCDSnapshotFile schema calls it.
        objects.append(body("s3", "s3", f"s3://{s3['bucket']}/{key}",
                            {"bucket": s3["bucket"], "endpoint": str(s3.get("endpoint") or ""),
                             "region": str(s3.get("region") or ""), "folder": folder, "prefix": folder}))
    return objects


# --- the modes --------------------------------------------------------------------------------

def read_config(options: argparse.Namespace) -> Any:
    """The cluster's config document (config.json in the Plan's Secret), None when none is given."""
    if options.config_file:
        source = options.config_file
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise SnapshotError(f"cannot read the cluster config document {source}: {exc}") from None
    else:
        source, text = "ETCD_SNAPSHOT_CONFIG", env("CONFIG")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SnapshotError(f"the cluster config document {source} is not JSON: {exc}") from None


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"manifest {path} is unreadable: {one_line(str(exc))}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"manifest {path} is not a {FORMAT} manifest")
    return manifest


def snapshot_name(options: argparse.Namespace) -> str:
    """The portal's name; else k3s/RKE2 style: <on-demand|etcd-snapshot>-<node>-<unix time>."""
    if options.name:
        return check_name(options.name)
    prefix = "on-demand" if options.kind == "manual" else "etcd-snapshot"
    node = options.node_name or socket.gethostname()
    return check_name(f"{prefix}-{node}-{int(time.time())}")


def record(api: KubeAPI | None, objects: list[dict[str, Any]], replace: bool = True) -> None:
    if api is None:
        return
    for body in objects:
        done = api.record(body, replace)
        print(f"etcd-snapshot: ETCDSnapshotFile {body['metadata']['name']} {done}")


def save(options: argparse.Namespace, etcd: Etcd, directory: Path, distribution: str,
         host: Path) -> dict[str, Any]:
    """etcdctl snapshot save → status → inventory → the bucket → the manifest on disk → ETCDSnapshotFile."""
    if options.kind not in KINDS:
        raise SnapshotError(f"--kind must be manual or recurring, not {options.kind!r}")
    name = snapshot_name(options)
    config = read_config(options)
    target = load_s3(options)
    api = None if options.no_record else KubeAPI.from_environment()  # before anything is done
    local_dir = seen_from_host(host, directory) or str(directory)
    manifest_path = directory / (name + MANIFEST_SUFFIX)
    if manifest_path.is_file():
        manifest = read_manifest(manifest_path)
        print(f"etcd-snapshot: {name} already saved in {directory}; nothing changed")
        record(api, snapshot_files(manifest, local_dir), replace=False)  # only records a failed run left out
        return manifest
    bucket = None
    if target:
        bucket = Bucket(target)
        bucket.check()
        stored = bucket.read_json(target.key(name + MANIFEST_SUFFIX))
        if stored is not None:
            print(f"etcd-snapshot: {name} already saved in {target.where()}; nothing changed")
            record(api, snapshot_files(stored, None), replace=False)
            return stored
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = directory / name
    partial = directory / f".{name}.part"
    try:
        # snapshot save itself waits forever for an etcd that is down: ask for its health first.
        run([*etcd.client_args(), "--command-timeout=5s", "endpoint", "health"], f"etcd at {etcd.endpoint}", 60)
        run([*etcd.client_args(), "snapshot", "save", str(partial)], f"etcdctl snapshot save from {etcd.endpoint}",
            options.timeout)
        status = snapshot_status(etcd, partial)
        os.chmod(partial, 0o600)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
        Path(f"{partial}.part").unlink(missing_ok=True)  # etcdctl's own temporary name
    revision = status.get("revision")
    inventory = read_inventory(etcd, revision, options.inventory_page)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "cluster": options.cluster,
        "cluster_name": options.cluster_name,
        "node": options.node_name or socket.gethostname(),
        "distribution": distribution,
        "kubernetes_version": options.kubernetes_version,
        "config_version": options.config_version,
        "config": config,
        "kind": options.kind,
        "created": now(),
        "file": name,
        "size": final.stat().st_size,
        "sha256": sha256(final),
        "etcd": {"revision": revision, "hash": status.get("hash"), "keys": status.get("totalKey"),
                 "total_size": status.get("totalSize")},
        "inventory": inventory,
        "s3": {"bucket": target.bucket, "endpoint": target.url, "region": target.region,
               "folder": target.folder, "key": target.key(name)} if target else None,
    }
    data = (json.dumps(manifest, sort_keys=True) + "\n").encode()
    print(f"etcd-snapshot: saved {final} ({manifest['size']} bytes, revision {revision}, "
          f"{len(inventory)} objects, sha256 {manifest['sha256']})")
    if bucket and target:
        bucket.upload(final, target.key(name))  # the archive first: a manifest in the bucket means complete
        bucket.put(data, target.key(name + MANIFEST_SUFFIX))
        print(f"etcd-snapshot: uploaded {name} and its manifest to {target.where()}")
    write_atomic(manifest_path, data)  # last: a manifest on disk means saved, in the bucket too
    print(f"etcd-snapshot: wrote {manifest_path}")
    record(api, snapshot_files(manifest, local_dir))
    return manifest


def check_manifest(path: Path, manifest_path: Path, name: str = "", expect_cluster: str = "",
                   expect_sha256: str = "") -> dict[str, Any]:
    """Format, name, cluster, SHA-256 and size against the manifest: nothing is restored from a file that differs."""
    manifest = read_manifest(manifest_path)
    label = name or manifest.get("name")
    if name and manifest.get("name") != name:
        raise SnapshotError(f"manifest {manifest_path} is the manifest of {manifest.get('name')!r}, not of {name!r}")
    if expect_cluster and manifest.get("cluster") != expect_cluster:
        raise SnapshotError(f"snapshot {label} belongs to cluster {manifest.get('cluster')!r}, "
                            f"not {expect_cluster!r}")
    if expect_sha256 and str(manifest.get("sha256") or "").lower() != expect_sha256.lower():
        raise SnapshotError(f"snapshot {label} has sha256 {manifest.get('sha256')}, not the expected "
                            f"{expect_sha256.lower()}")
    size = path.stat().st_size
    if size != manifest.get("size"):
        raise SnapshotError(f"snapshot {path} is {size} bytes, its manifest says {manifest.get('size')}: "
                            "truncated or replaced")
    digest = sha256(path)
    if digest != manifest.get("sha256"):
        raise SnapshotError(f"snapshot {path} is corrupt: sha256 {digest} differs from the manifest's "
                            f"{manifest.get('sha256')}")
    return manifest


def verify_snapshot(options: argparse.Namespace, etcd: Etcd, directory: Path) -> tuple[dict[str, Any], Path]:
    """The local copy, else the bucket's fetched into the snapshot directory (kept only when it checks out)."""
    name = check_name(options.snapshot)
    if not SHA256.match(options.sha256 or ""):
        raise SnapshotError(f"--sha256 must be 64 hexadecimal digits, not {options.sha256!r}")
    if not options.expect_cluster:
        raise SnapshotError("--expect-cluster must be the cluster's kube-system namespace uid, not empty")
    path, manifest_path = directory / name, directory / (name + MANIFEST_SUFFIX)
    source = str(directory)
    staging: Path | None = None
    bucket = target = None
    if not (path.is_file() and manifest_path.is_file()):
        target = load_s3(options)
        if target is None:
            missing = path if not path.is_file() else manifest_path
            raise SnapshotError(f"snapshot {name} is missing: {missing} does not exist")
        bucket = Bucket(target)
        for filename in (name + MANIFEST_SUFFIX, name):
            if not bucket.exists(target.key(filename)):
                raise SnapshotError(f"snapshot {name} is missing: not in {directory}, and "
                                    f"s3://{target.bucket}/{target.key(filename)} does not exist")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.fetch-", dir=directory))
        source = target.where()
    try:
        if staging is not None and bucket is not None and target is not None:
            path, manifest_path = staging / name, staging / (name + MANIFEST_SUFFIX)
            bucket.download(target.key(name + MANIFEST_SUFFIX), manifest_path)
            bucket.download(target.key(name), path)
        manifest = check_manifest(path, manifest_path, name, options.expect_cluster, options.sha256)
        try:
            snapshot_status(etcd, path)
        except SnapshotError as exc:
            raise SnapshotError(f"snapshot {name} is not a readable etcd snapshot: {exc}") from None
        if staging is not None:
            os.chmod(path, 0o600)
            os.replace(path, directory / name)
            os.replace(manifest_path, directory / (name + MANIFEST_SUFFIX))
            path = directory / name
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    print(f"etcd-snapshot: verified {name} from {source}: cluster {manifest.get('cluster')}, "
          f"{manifest.get('size')} bytes, sha256 {manifest.get('sha256')}, etcd revision "
          f"{(manifest.get('etcd') or {}).get('revision')}")
    return manifest, path


def start_again(host: Path, unit: str) -> str:
    """After a failed step: the service runs again (what it ran on), in words for the reason."""
    try:
        host_command(host, ["systemctl", "start", unit], f"systemctl start {unit}")
    except SnapshotError as exc:
        return f"starting {unit} again failed too: {exc}"
    print(f"etcd-snapshot: started {unit} again")
    return f"{unit} started again"


def cluster_reset(options: argparse.Namespace, etcd: Etcd, directory: Path, host: Path, distribution: str) -> None:
    """Verify, then RKE2/k3s's documented restore: stop the server, --cluster-reset from the file, start it."""
    manifest, path = verify_snapshot(options, etcd, directory)
    restore_path = seen_from_host(host, path)
    if restore_path is None:
        raise SnapshotError(f"snapshot {path} is not under the host root {host}: the host's {distribution} "
                            "cannot read it")
    unit = SERVICES[distribution]
    host_command(host, ["systemctl", "stop", unit], f"systemctl stop {unit}")
    print(f"etcd-snapshot: stopped {unit}")
    reset = [server_binary(host, distribution), "server", "--cluster-reset",
             f"--cluster-reset-restore-path={restore_path}"]
    print(f"etcd-snapshot: running {' '.join(reset)}")
    try:
        host_command(host, reset, f"{distribution} server --cluster-reset", options.timeout)
    except SnapshotError as failed:
        raise SnapshotError(f"{failed}; {start_again(host, unit)}") from None
    print(f"etcd-snapshot: etcd reset to {manifest['name']} (revision {(manifest.get('etcd') or {}).get('revision')})")
    host_command(host, ["systemctl", "start", unit], f"systemctl start {unit}")
    print(f"etcd-snapshot: started {unit}")


def rejoin(host: Path, distribution: str) -> None:
    """Another server after a cluster-reset: stop it, move its etcd aside, start it; it joins the restored member."""
    unit = SERVICES[distribution]
    data = f"/var/lib/rancher/{distribution}/server/db/etcd"
    etcd_dir = host_path(host, data)
    host_command(host, ["systemctl", "stop", unit], f"systemctl stop {unit}")
    print(f"etcd-snapshot: stopped {unit}")
    if etcd_dir.exists():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = etcd_dir.with_name(f"etcd-old-{stamp}")
        count = 1
        while aside.exists():
            aside = etcd_dir.with_name(f"etcd-old-{stamp}-{count}")
            count += 1
        try:
            os.rename(etcd_dir, aside)
        except OSError as exc:
            raise SnapshotError(f"moving {data} aside failed: {one_line(str(exc))}; {start_again(host, unit)}") from None
        print(f"etcd-snapshot: moved {data} aside to {aside.name}")
    else:
        print(f"etcd-snapshot: no {data} to move aside")
    host_command(host, ["systemctl", "start", unit], f"systemctl start {unit}")
    print(f"etcd-snapshot: started {unit}; it joins the restored etcd")


def delete(options: argparse.Namespace, directory: Path) -> None:
    """The files on this node and in the bucket, and the ETCDSnapshotFile objects; what is gone already is fine."""
    names = [check_name(name) for name in options.snapshot]
    api = None if options.no_record else KubeAPI.from_environment()
    target = load_s3(options)
    bucket = Bucket(target) if target else None
    for name in names:
        files = (name + MANIFEST_SUFFIX, name)  # the manifest first: half a deletion is no complete snapshot
        removed = []
        for filename in files:
            path = directory / filename
            if path.is_file() or path.is_symlink():
                path.unlink()
                removed.append(filename)
        print(f"etcd-snapshot: removed {' and '.join(removed)} from {directory}" if removed
              else f"etcd-snapshot: {name} is not in {directory}")
        if bucket and target:
            for filename in files:
                bucket.delete(target.key(filename))
            print(f"etcd-snapshot: deleted {name} and its manifest from {target.where()}")
        if api:
            for storage in ("local", "s3"):
                object_ = object_name(storage, name)
                gone = api.delete(object_)
                print(f"etcd-snapshot: ETCDSnapshotFile {object_} {'deleted' if gone else 'was not there'}")


def locate(options: argparse.Namespace, directory: Path) -> tuple[Path, Path]:
    """The snapshot and its manifest: a path, a name in the snapshot dir, or fetched from the bucket."""
    given = options.snapshot
    if not given:
        raise SnapshotError("restore needs --snapshot NAME or PATH")
    path = Path(given) if "/" in given else directory / given
    manifest = Path(options.manifest) if options.manifest else path.with_name(path.name + MANIFEST_SUFFIX)
    if path.exists() and manifest.exists():
        return path, manifest
    target = load_s3(options)
    if target is None or "/" in given:
        missing = path if not path.exists() else manifest
        raise SnapshotError(f"snapshot {given} is missing: {missing} does not exist")
    bucket = Bucket(target)
    fetched = Path(tempfile.mkdtemp(prefix="etcd-snapshot-"))
    bucket.download(target.key(given + MANIFEST_SUFFIX), fetched / (given + MANIFEST_SUFFIX))
    bucket.download(target.key(given), fetched / given)
    print(f"etcd-snapshot: fetched {given} and its manifest from {target.where()}")
    return fetched / given, fetched / (given + MANIFEST_SUFFIX)


def restore(options: argparse.Namespace, etcd: Etcd, directory: Path) -> dict[str, Any]:
    """Verify, then `etcdctl snapshot restore` into a new data dir (never over an existing one)."""
    if not options.data_dir:
        raise SnapshotError("restore needs --data-dir (a new directory)")
    data_dir = Path(options.data_dir)
    if data_dir.exists():
        raise SnapshotError(f"data directory {data_dir} already exists; restore only into a new one")
    path, manifest_path = locate(options, directory)
    manifest = check_manifest(path, manifest_path, expect_cluster=options.expect_cluster)
    snapshot_status(etcd, path)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(f".{data_dir.name}.restoring")
    shutil.rmtree(staging, ignore_errors=True)
    args = [*etcd.offline(), "snapshot", "restore", str(path), f"--data-dir={staging}", f"--name={options.member_name}"]
    if options.initial_cluster:
        args.append(f"--initial-cluster={options.initial_cluster}")
    if options.initial_advertise_peer_urls:
        args.append(f"--initial-advertise-peer-urls={options.initial_advertise_peer_urls}")
    if options.initial_cluster_token:
        args.append(f"--initial-cluster-token={options.initial_cluster_token}")
    try:
        run(args, "etcdctl snapshot restore")
        os.replace(staging, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"etcd-snapshot: restored {manifest['name']} (cluster {manifest.get('cluster')}, Kubernetes "
          f"{manifest.get('kubernetes_version')}, config version {manifest.get('config_version')}, etcd revision "
          f"{manifest['etcd'].get('revision')}) into {data_dir}")
    return manifest


def list_snapshots(options: argparse.Namespace, directory: Path | None) -> list[dict[str, Any]]:
    """Manifests on this node and in the bucket: the bucket alone is enough to rediscover snapshots."""
    found: list[dict[str, Any]] = []
    if directory is not None and directory.is_dir():
        for manifest_path in sorted(directory.glob("*" + MANIFEST_SUFFIX)):
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError):
                continue
            manifest["location"] = {"type": "local", "path": str(directory / manifest.get("file", ""))}
            found.append(manifest)
    target = load_s3(options)
    if target:
        found.extend(Bucket(target).manifests())
    return found


# --- command line -----------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """A usage error is a failure like any other: exit 1, one line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: {one_line(message)}\n")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="etcd-snapshot", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host-root", default=env("HOST_ROOT", "/host"))
    common.add_argument("--distribution", default=env("DISTRIBUTION"), choices=["", *DISTRIBUTIONS])
    common.add_argument("--snapshot-dir", default=env("SNAPSHOT_DIR"),
                        help="default: <host-root>/var/lib/rancher/<dist>/server/db/snapshots")
    common.add_argument("--endpoint", default=env("ENDPOINT", "https://127.0.0.1:2379"))
    common.add_argument("--cacert", default=env("CACERT"), help="default: <host>/…/server/tls/etcd/server-ca.crt")
    common.add_argument("--cert", default=env("CERT"), help="default: <host>/…/server/tls/etcd/server-client.crt")
    common.add_argument("--key", default=env("KEY"), help="default: <host>/…/server/tls/etcd/server-client.key")
    common.add_argument("--etcdctl", default=env("ETCDCTL", "etcdctl"))
    common.add_argument("--etcdutl", default=env("ETCDUTL", shutil.which("etcdutl") or ""))
    common.add_argument("--s3-secret-dir", default=env("S3_SECRET_DIR"))
    for field in ("bucket", "endpoint", "region", "folder", "endpoint-ca"):
        common.add_argument(f"--s3-{field}", default="")
    no_record = argparse.ArgumentParser(add_help=False)
    no_record.add_argument("--no-record", action="store_true", default=env_flag("NO_RECORD"),
                           help="leave the ETCDSnapshotFile objects alone (no Kubernetes API)")
    checked = argparse.ArgumentParser(add_help=False)
    checked.add_argument("--snapshot", required=True, help="the snapshot's NAME")
    checked.add_argument("--expect-cluster", required=True, help="the cluster's kube-system namespace uid")
    checked.add_argument("--sha256", required=True, help="the SHA-256 the portal recorded for the snapshot")

    modes = top.add_subparsers(dest="mode", required=True)
    save_p = modes.add_parser("save", parents=[common, no_record], help="take a snapshot")
    save_p.add_argument("--name", default=env("NAME"))
    save_p.add_argument("--node-name", default=env("NODE_NAME", os.environ.get("SYSTEM_UPGRADE_NODE_NAME", "")))
    save_p.add_argument("--cluster", default=env("CLUSTER"), help="the kube-system namespace uid")
    save_p.add_argument("--cluster-name", default=env("CLUSTER_NAME"))
    save_p.add_argument("--kubernetes-version", default=env("KUBERNETES_VERSION"))
    save_p.add_argument("--config-version", type=int, default=env("CONFIG_VERSION") or None)
    save_p.add_argument("--config-file", default=env("CONFIG_FILE"), help="JSON; else ETCD_SNAPSHOT_CONFIG")
    save_p.add_argument("--kind", default=env("KIND", "manual"), choices=KINDS)
    save_p.add_argument("--timeout", type=float, default=float(env("TIMEOUT", "900")),
                        help="seconds etcdctl snapshot save may take (default 900)")
    save_p.add_argument("--inventory-page", type=int, default=int(env("INVENTORY_PAGE", "5000")),
                        help="keys read per etcdctl get for the inventory (default 5000)")
    modes.add_parser("verify", parents=[common, checked],
                     help="check a snapshot (fetched from the bucket when not on disk); prints its manifest")
    reset_p = modes.add_parser("cluster-reset", parents=[common, checked],
                               help="verify, then reset the node's etcd to the snapshot (RKE2/k3s --cluster-reset)")
    reset_p.add_argument("--timeout", type=float, default=float(env("RESET_TIMEOUT", "1800")),
                         help="seconds `server --cluster-reset` may take (default 1800)")
    modes.add_parser("rejoin", parents=[common], help="move this server's etcd aside so it joins the restored one")
    delete_p = modes.add_parser("delete", parents=[common, no_record], help="delete snapshots and their records")
    delete_p.add_argument("--snapshot", action="append", required=True, help="a snapshot NAME (repeatable)")
    restore_p = modes.add_parser("restore", parents=[common], help="verify a snapshot and restore it")
    restore_p.add_argument("--snapshot", default=env("SNAPSHOT"))
    restore_p.add_argument("--manifest", default="")
    restore_p.add_argument("--data-dir", default=env("DATA_DIR"))
    restore_p.add_argument("--name", dest="member_name", default=env("MEMBER_NAME", "default"))
    restore_p.add_argument("--initial-cluster", default=env("INITIAL_CLUSTER"))
    restore_p.add_argument("--initial-advertise-peer-urls", default=env("INITIAL_ADVERTISE_PEER_URLS"))
    restore_p.add_argument("--initial-cluster-token", default=env("INITIAL_CLUSTER_TOKEN"))
    restore_p.add_argument("--expect-cluster", default=env("EXPECT_CLUSTER"))
    list_p = modes.add_parser("list", parents=[common], help="print the manifests found locally and in S3")
    list_p.add_argument("--no-local", action="store_true", help="the bucket only")
    return top


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # step reports reach the Job's log before a failure's line
    options = parser().parse_args(argv)
    host = Path(options.host_root)
    try:
        if options.mode == "list" and options.no_local:
            print(json.dumps(list_snapshots(options, None), indent=2, sort_keys=True))
            return 0
        distribution = options.distribution or detect_quietly(host)
        if options.mode == "rejoin":
            rejoin(host, distribution or detect(host))
            return 0

        def node_path(path: str) -> str:
            """A default under /var/lib/rancher/<dist>/server on the host: needs the distribution."""
            return str(host_path(host, f"/var/lib/rancher/{distribution or detect(host)}/server/{path}"))

        directory = Path(options.snapshot_dir or node_path("db/snapshots"))
        https = options.endpoint.startswith("https://")
        etcd = Etcd(endpoint=options.endpoint,
                    cacert=options.cacert or (node_path("tls/etcd/server-ca.crt") if https else ""),
                    cert=options.cert or (node_path("tls/etcd/server-client.crt") if https else ""),
                    key=options.key or (node_path("tls/etcd/server-client.key") if https else ""),
                    etcdctl=options.etcdctl, etcdutl=options.etcdutl)
        if options.mode == "save":
            save(options, etcd, directory, distribution, host)
        elif options.mode == "verify":
            manifest, _ = verify_snapshot(options, etcd, directory)
            print(json.dumps(manifest, sort_keys=True, separators=(",", ":")))  # the last line: the portal reads it
        elif options.mode == "cluster-reset":
            cluster_reset(options, etcd, directory, host, distribution or detect(host))
        elif options.mode == "delete":
            delete(options, directory)
        elif options.mode == "restore":
            restore(options, etcd, directory)
        else:
            print(json.dumps(list_snapshots(options, directory), indent=2, sort_keys=True))
    except (SnapshotError, OSError) as exc:
        sys.stdout.flush()
        print(f"etcd-snapshot: {one_line(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
