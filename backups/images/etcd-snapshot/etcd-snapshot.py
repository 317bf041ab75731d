#!/usr/bin/env python3
"""Corral etcd-snapshot: save, verify-and-restore and list etcd snapshots on an RKE2/k3s server node.

Run by system-upgrade-controller as the upgrade container of a Plan on an etcd (server) node, with
the host's root mounted at /host (the same way as corral/node-config):

    etcd-snapshot save    --cluster c-1 --kubernetes-version v1.15.11 --config-version 3
                          [--config-file FILE] [--kind manual|recurring] [--name NAME]
    etcd-snapshot restore --snapshot NAME|PATH --data-dir DIR [--name MEMBER]
                          [--initial-cluster NAME=URL,...] [--initial-advertise-peer-urls URL]
                          [--expect-cluster c-1]
    etcd-snapshot list    [--no-local]

A snapshot is two files side by side, on the node's disk (default
/var/lib/rancher/<rke2|k3s>/server/db/snapshots, where RKE2 and k3s keep their own) and, with an S3
target, in the bucket under the folder: ``<name>`` (what ``etcdctl snapshot save`` wrote) and
``<name>.manifest.json`` (cluster, Kubernetes version, config version and document, etcd revision,
size, SHA-256, time, manual or recurring). The manifest is written last, so a manifest means a
complete snapshot; restore refuses any file whose size or SHA-256 differ from it before touching
anything.

etcd is reached as RKE2/k3s expose it to their own tools: https://127.0.0.1:2379 with the client
certificate under /var/lib/rancher/<dist>/server/tls/etcd/ (server-ca.crt, server-client.crt,
server-client.key). Every flag has an ETCD_SNAPSHOT_* environment variable.

S3 settings come from a Kubernetes Secret mounted as a directory (--s3-secret-dir, files bucket,
endpoint, region, folder, access-key, secret-key, endpoint-ca) and/or ETCD_SNAPSHOT_S3_* variables,
which win. The keys are read only from files or the environment, never flags, so they stay out of
process listings. Failures exit 1 with one line on stderr that a Job's log can show as the reason.

Only the standard library, plus boto3 when an S3 target is given.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "corral.etcd-snapshot/v1"
MANIFEST_SUFFIX = ".manifest.json"
DISTRIBUTIONS = ("rke2", "k3s")
KINDS = ("manual", "recurring")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
S3_FIELDS = ("bucket", "endpoint", "region", "folder", "access-key", "secret-key", "endpoint-ca")


class SnapshotError(Exception):
    """A failure with a reason meant for the job log (one line, no traceback)."""


def env(name: str, default: str = "") -> str:
    return os.environ.get(f"ETCD_SNAPSHOT_{name}", default)


def one_line(text: str) -> str:
    """Job logs show the last line of stderr as the reason: keep the reason on one."""
    return " ".join(str(text).split())


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

    def call(self, what: str, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return getattr(self.client, method)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "?"), error.get("Message", "")
            raise SnapshotError(f"S3 {what} in {self.target.where()} failed: {code}: {one_line(message)}") from None
        except BotoCoreError as exc:  # unreachable endpoint, TLS, timeouts
            raise SnapshotError(f"S3 {what} in {self.target.where()} failed: {one_line(str(exc))}") from None

    def check(self) -> None:
        """A cheap authenticated call first: a wrong key or a missing bucket fails before etcd is touched."""
        self.call("access check", "list_objects_v2", Bucket=self.target.bucket,
                  Prefix=self.target.key(""), MaxKeys=1)

    def upload(self, path: Path, key: str) -> None:
        with path.open("rb") as body:
            self.call(f"upload of {key}", "put_object", Bucket=self.target.bucket, Key=key, Body=body)

    def download(self, key: str, path: Path) -> None:
        answer = self.call(f"download of {key}", "get_object", Bucket=self.target.bucket, Key=key)
        with path.open("wb") as handle:
            for block in iter(lambda: answer["Body"].read(1 << 20), b""):
                handle.write(block)

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


# --- the modes --------------------------------------------------------------------------------

def read_config(options: argparse.Namespace) -> str:
    if options.config_file:
        try:
            return Path(options.config_file).read_text()
        except OSError as exc:
            raise SnapshotError(f"cannot read the cluster config document {options.config_file}: {exc}") from None
    return env("CONFIG")


def snapshot_name(options: argparse.Namespace) -> str:
    """k3s/RKE2 style: <on-demand|etcd-snapshot>-<node>-<unix time>."""
    if options.name:
        name = options.name
    else:
        prefix = "on-demand" if options.kind == "manual" else "etcd-snapshot"
        node = options.node_name or socket.gethostname()
        name = f"{prefix}-{node}-{int(time.time())}"
    if not NAME.match(name) or name.endswith(MANIFEST_SUFFIX):
        raise SnapshotError(f"invalid snapshot name {name!r}")
    return name


def save(options: argparse.Namespace, etcd: Etcd, directory: Path, distribution: str) -> dict[str, Any]:
    """etcdctl snapshot save → status → manifest, on disk and then in the bucket."""
    if options.kind not in KINDS:
        raise SnapshotError(f"--kind must be manual or recurring, not {options.kind!r}")
    name = snapshot_name(options)
    config = read_config(options)
    bucket = None
    target = load_s3(options)
    if target:
        bucket = Bucket(target)
        bucket.check()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = directory / name
    if final.exists() or (directory / (name + MANIFEST_SUFFIX)).exists():
        raise SnapshotError(f"a snapshot named {name} already exists in {directory}")
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
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "name": name,
        "cluster": options.cluster,
        "node": options.node_name or socket.gethostname(),
        "distribution": distribution,
        "kubernetes_version": options.kubernetes_version,
        "config_version": options.config_version,
        "config": config,
        "kind": options.kind,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "file": name,
        "size": final.stat().st_size,
        "sha256": sha256(final),
        "etcd": {"revision": status.get("revision"), "hash": status.get("hash"),
                 "total_keys": status.get("totalKey"), "total_size": status.get("totalSize")},
        "s3": {"bucket": target.bucket, "endpoint": target.url, "region": target.region,
               "folder": target.folder, "key": target.key(name)} if target else None,
    }
    manifest_path = directory / (name + MANIFEST_SUFFIX)
    write_atomic(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    print(f"etcd-snapshot: saved {final} ({manifest['size']} bytes, revision {status.get('revision')}, "
          f"sha256 {manifest['sha256']})")
    if bucket and target:
        bucket.upload(final, target.key(name))  # the archive first: a manifest in the bucket means complete
        bucket.upload(manifest_path, target.key(name + MANIFEST_SUFFIX))
        print(f"etcd-snapshot: uploaded {name} and its manifest to {target.where()}")
    return manifest


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


def verify(path: Path, manifest_path: Path, expect_cluster: str = "") -> dict[str, Any]:
    """Size, SHA-256 and cluster against the manifest: nothing is restored from a file that differs."""
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"manifest {manifest_path} is unreadable: {one_line(str(exc))}") from None
    if manifest.get("format") != FORMAT:
        raise SnapshotError(f"manifest {manifest_path} is not a {FORMAT} manifest")
    if expect_cluster and manifest.get("cluster") != expect_cluster:
        raise SnapshotError(f"snapshot {manifest.get('name')} belongs to cluster {manifest.get('cluster')!r}, "
                            f"not {expect_cluster!r}")
    size = path.stat().st_size
    if size != manifest.get("size"):
        raise SnapshotError(f"snapshot {path} is {size} bytes, its manifest says {manifest.get('size')}: "
                            "truncated or replaced")
    digest = sha256(path)
    if digest != manifest.get("sha256"):
        raise SnapshotError(f"snapshot {path} is corrupt: sha256 {digest} differs from the manifest's "
                            f"{manifest.get('sha256')}")
    return manifest


def restore(options: argparse.Namespace, etcd: Etcd, directory: Path) -> dict[str, Any]:
    """Verify, then `etcdctl snapshot restore` into a new data dir (never over an existing one)."""
    if not options.data_dir:
        raise SnapshotError("restore needs --data-dir (a new directory)")
    data_dir = Path(options.data_dir)
    if data_dir.exists():
        raise SnapshotError(f"data directory {data_dir} already exists; restore only into a new one")
    path, manifest_path = locate(options, directory)
    manifest = verify(path, manifest_path, options.expect_cluster)
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

def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="etcd-snapshot", description=__doc__.splitlines()[0])
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
    modes = top.add_subparsers(dest="mode", required=True)
    save_p = modes.add_parser("save", parents=[common], help="take a snapshot")
    save_p.add_argument("--name", default=env("NAME"))
    save_p.add_argument("--node-name", default=env("NODE_NAME", os.environ.get("SYSTEM_UPGRADE_NODE_NAME", "")))
    save_p.add_argument("--cluster", default=env("CLUSTER"))
    save_p.add_argument("--kubernetes-version", default=env("KUBERNETES_VERSION"))
    save_p.add_argument("--config-version", default=env("CONFIG_VERSION"))
    save_p.add_argument("--config-file", default=env("CONFIG_FILE"), help="else ETCD_SNAPSHOT_CONFIG")
    save_p.add_argument("--kind", default=env("KIND", "manual"), choices=KINDS)
    save_p.add_argument("--timeout", type=float, default=float(env("TIMEOUT", "900")),
                        help="seconds etcdctl snapshot save may take (default 900)")
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
    options = parser().parse_args(argv)
    host = Path(options.host_root)
    try:
        if options.mode == "list" and options.no_local:
            print(json.dumps(list_snapshots(options, None), indent=2, sort_keys=True))
            return 0
        distribution = options.distribution or detect_quietly(host)

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
            save(options, etcd, directory, distribution)
        elif options.mode == "restore":
            restore(options, etcd, directory)
        else:
            print(json.dumps(list_snapshots(options, directory), indent=2, sort_keys=True))
    except SnapshotError as exc:
        print(f"etcd-snapshot: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"etcd-snapshot: {one_line(str(exc))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
