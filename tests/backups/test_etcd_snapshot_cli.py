"""The etcd-snapshot image's Plan subcommands (backups/README.md): save's inventory and "already saved",
verify, cluster-reset, rejoin and delete, and the ETCDSnapshotFile records.

Against a real etcd and moto's S3 server as in test_etcd_snapshot_image.py, a temporary directory as the
host's root with a fake `chroot` on PATH that records what the host was asked to do, and a small TLS
Kubernetes API on 127.0.0.1 that serves ETCDSnapshotFile the way kube-apiserver serves a CRD.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.backups import test_etcd_snapshot_image as image
from tests.backups.test_etcd_snapshot_image import (
    BUCKET,
    S3,
    SNAPSHOTS,
    Etcd,
    run,
    save,
    secret_dir,
    start_etcd,
)

# The image tests' fixtures, shared rather than copied.
etcds = image.etcds
host = image.host
s3 = image.s3

RKE2_RESET = "server --cluster-reset --cluster-reset-restore-path=/var/lib/rancher/{dist}/server/db/snapshots/{name}"


@pytest.fixture
def member(tmp_path, etcds) -> Etcd:
    started = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(started)
    return started


def saved(root: Path, member: Etcd, name: str, *args: str, env: dict[str, str] | None = None,
          record: bool = False, dist: str = "rke2") -> dict[str, Any]:
    done = save(root, member, "--name", name, *args, env=env, record=record)
    assert done.returncode == 0, done.stderr
    return json.loads((root / SNAPSHOTS.replace("rke2", dist) / f"{name}.manifest.json").read_text())


def contents(directory: Path) -> dict[str, bytes]:
    """Every file under a directory (hidden ones too) with its bytes: "nothing changed" made checkable."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def checked(mode: str, name: str, sha: str, cluster: str = "c-demo") -> list[str]:
    return [mode, "--snapshot", name, "--expect-cluster", cluster, "--sha256", sha]


def make_host(tmp_path: Path, dist: str) -> Path:
    root = tmp_path / f"host-{dist}"
    (root / "etc/rancher" / dist).mkdir(parents=True)
    return root


# --- save: inventory and "already saved" ---------------------------------------------------------

def test_the_inventory_lists_every_object_at_the_snapshot_revision_as_the_api_server_keys_them(
        tmp_path, host, member):
    for key in ("/registry/pods/default/web-1", "/registry/services/specs/default/web",
                "/registry/services/endpoints/default/web", "/registry/deployments/default/web",
                "/registry/replicasets/default/web-5d4f", "/registry/minions/etcd-1", "/registry/namespaces/default",
                "/registry/controllers/default/legacy-rc", "/registry/ingress/default/web",
                "/registry/podsecuritypolicy/restricted", "/registry/clusterroles/admin",
                "/registry/leases/kube-node-lease/etcd-1", "/registry/cronjobs/default/nightly",
                "/registry/upgrade.cattle.io/plans/system-upgrade/corral-snap-1",
                "/registry/k3s.cattle.io/etcdsnapshotfiles/local-old",
                "/registry/apiextensions.k8s.io/customresourcedefinitions/plans.upgrade.cattle.io",
                "/registry/apiregistration.k8s.io/apiservices/v1.apps",
                "/registry/ranges/serviceips", "/registry/masterleases/10.0.0.1",  # no API objects
                "/registry/configmaps/default/gone", "/other/key"):
        member.put(key, "x")
    assert member.ctl("del", "/registry/configmaps/default/gone").returncode == 0
    # etcdctl that writes a key just before each first inventory page: the inventory is read at the
    # snapshot's revision, so the late key is not in it; three keys a page walks through every page.
    wrapper = tmp_path / "etcdctl-late-writer"
    wrapper.write_text(f"""#!/bin/sh
case " $* " in *" get /registry/ "*) etcdctl --endpoints={member.client_url} put /registry/pods/default/late x \
>/dev/null ;; esac
exec etcdctl "$@"
""")
    wrapper.chmod(0o755)

    manifest = saved(host, member, "snap-inv", "--etcdctl", str(wrapper), "--inventory-page", "3")
    assert manifest["inventory"] == [
        ["apiservices.apiregistration.k8s.io", "", "v1.apps"],
        ["clusterroles.rbac.authorization.k8s.io", "", "admin"],
        ["cronjobs.batch", "default", "nightly"],
        ["customresourcedefinitions.apiextensions.k8s.io", "", "plans.upgrade.cattle.io"],
        ["deployments.apps", "default", "web"],
        ["endpoints", "default", "web"],
        ["etcdsnapshotfiles.k3s.cattle.io", "", "local-old"],
        ["ingresses.networking.k8s.io", "default", "web"],
        ["leases.coordination.k8s.io", "kube-node-lease", "etcd-1"],
        ["namespaces", "", "default"],
        ["nodes", "", "etcd-1"],
        ["plans.upgrade.cattle.io", "system-upgrade", "corral-snap-1"],
        ["pods", "default", "web-1"],
        ["podsecuritypolicies.policy", "", "restricted"],
        ["replicasets.apps", "default", "web-5d4f"],
        ["replicationcontrollers", "default", "legacy-rc"],
        ["services", "default", "web"],
    ]
    assert member.get("/registry/pods/default/late") == "x"  # written, but after the snapshot's revision
    assert manifest["cluster_name"] == "demo" and manifest["etcd"]["revision"] >= 22


def test_saving_a_name_again_says_already_saved_and_changes_nothing(tmp_path, host, member, s3):
    saved(host, member, "snap")
    before = contents(host / SNAPSHOTS)
    member.put("/registry/pods/default/new", "1")
    again = save(host, member, "--name", "snap")
    assert again.returncode == 0, again.stderr
    assert f"snap already saved in {host / SNAPSHOTS}; nothing changed" in again.stdout
    assert contents(host / SNAPSHOTS) == before

    # In the bucket only (the node lost its disk): already saved as well, nothing written anywhere.
    secret = secret_dir(tmp_path, s3, "again")
    saved(host, member, "snap-s3", "--s3-secret-dir", str(secret))
    for suffix in ("", ".manifest.json"):
        (host / SNAPSHOTS / f"snap-s3{suffix}").unlink()
    objects = {o["Key"]: (o["ETag"], o["LastModified"])
               for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="again/")["Contents"]}
    again = save(host, member, "--name", "snap-s3", "--s3-secret-dir", str(secret))
    assert again.returncode == 0, again.stderr
    assert f"snap-s3 already saved in s3://{BUCKET}/again/ at {s3.url}; nothing changed" in again.stdout
    assert contents(host / SNAPSHOTS) == before
    assert {o["Key"]: (o["ETag"], o["LastModified"])
            for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="again/")["Contents"]} == objects


# --- verify ------------------------------------------------------------------------------------

def test_verify_prints_the_manifest_as_one_json_line_last(tmp_path, host, member):
    member.put("/registry/pods/default/web", "1")
    manifest = saved(host, member, "snap")
    before = contents(host / SNAPSHOTS)
    done = run(host, *checked("verify", "snap", manifest["sha256"].upper()))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == manifest and lines[-1].startswith("{")
    assert lines[0] == (f"etcd-snapshot: verified snap from {host / SNAPSHOTS}: cluster c-demo, {manifest['size']} "
                        f"bytes, sha256 {manifest['sha256']}, etcd revision {manifest['etcd']['revision']}")
    assert ["pods", "default", "web"] in json.loads(lines[-1])["inventory"]
    assert contents(host / SNAPSHOTS) == before and done.stderr == ""


def _flip_a_byte(directory: Path, manifest: dict) -> dict:
    data = bytearray((directory / "snap").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / "snap").write_bytes(bytes(data))
    return {}


def _truncate(directory: Path, manifest: dict) -> dict:
    (directory / "snap").write_bytes((directory / "snap").read_bytes()[:-100])
    return {}


def _not_an_etcd_snapshot(directory: Path, manifest: dict) -> dict:
    """A file whose manifest and expected SHA-256 agree with it, but that etcd cannot read."""
    garbage = b"not an etcd snapshot\n" * 100
    (directory / "snap").write_bytes(garbage)
    digest = hashlib.sha256(garbage).hexdigest()
    (directory / "snap.manifest.json").write_text(json.dumps(dict(manifest, size=len(garbage), sha256=digest)))
    return {"sha": digest}


def _remove(*suffixes: str) -> Callable[[Path, dict], dict]:
    def remove(directory: Path, manifest: dict) -> dict:
        for suffix in suffixes:
            (directory / f"snap{suffix}").unlink()
        return {}
    return remove


def _foreign_manifest(directory: Path, manifest: dict) -> dict:
    (directory / "snap.manifest.json").write_text(json.dumps(dict(manifest, format="rancher/v1")))
    return {}


@pytest.mark.parametrize("change, expected", [
    (_flip_a_byte, r"snapshot \S+/snap is corrupt: sha256 [0-9a-f]{64} differs from the manifest's [0-9a-f]{64}"),
    (_truncate, r"snapshot \S+/snap is \d+ bytes, its manifest says \d+: truncated or replaced"),
    (lambda d, m: {"cluster": "c-other"}, r"snapshot snap belongs to cluster 'c-demo', not 'c-other'"),
    (lambda d, m: {"sha": "0" * 64}, r"snapshot snap has sha256 [0-9a-f]{64}, not the expected 0{64}"),
    (_remove("", ".manifest.json"), r"snapshot snap is missing: \S+/snap does not exist"),
    (_remove(".manifest.json"), r"snapshot snap is missing: \S+/snap.manifest.json does not exist"),
    (_not_an_etcd_snapshot, r"snapshot snap is not a readable etcd snapshot: etcdctl snapshot status failed"),
    (_foreign_manifest, r"manifest \S+/snap.manifest.json is not a corral.etcd-snapshot/v1 manifest"),
    (lambda d, m: {"sha": "abc"}, r"--sha256 must be 64 hexadecimal digits, not 'abc'"),
], ids=["tampered", "truncated", "other-cluster", "wrong-sha256", "missing", "no-manifest", "not-etcd",
        "foreign-manifest", "bad-sha256-flag"])
def test_verify_refuses_with_one_line_and_changes_nothing(tmp_path, host, member, change, expected):
    manifest = saved(host, member, "snap")
    directory = host / SNAPSHOTS
    override = change(directory, manifest)
    before = contents(directory)
    done = run(host, *checked("verify", "snap", override.get("sha", manifest["sha256"]),
                              override.get("cluster", "c-demo")))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert re.fullmatch(f"etcd-snapshot: {expected}.*", line), line
    assert "{" not in done.stdout  # no manifest line: the portal reads none
    assert contents(directory) == before


def test_usage_errors_exit_1_with_one_line(host):
    done = run(host, "verify", "--snapshot", "snap", "--expect-cluster", "c-demo")
    assert done.returncode == 1
    assert done.stderr.strip() == "etcd-snapshot verify: the following arguments are required: --sha256"


def test_verify_fetches_from_the_bucket_into_the_snapshot_directory_only_what_checks_out(tmp_path, host, member, s3):
    secret = secret_dir(tmp_path, s3, "fleet/verify")
    manifest = saved(host, member, "snap", "--s3-secret-dir", str(secret))
    fresh = make_host(tmp_path, "rke2")
    done = run(fresh, *checked("verify", "snap", manifest["sha256"]), "--s3-secret-dir", str(secret))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == manifest
    assert f"verified snap from s3://{BUCKET}/fleet/verify/ at {s3.url}" in done.stdout
    assert contents(fresh / SNAPSHOTS) == contents(host / SNAPSHOTS)  # both files, nothing else
    assert oct((fresh / SNAPSHOTS / "snap").stat().st_mode & 0o777) == "0o600"

    # A bucket copy that differs from its manifest is refused and nothing is left in the directory.
    data = bytearray((host / SNAPSHOTS / "snap").read_bytes())
    data[100] ^= 0xFF
    s3.client().put_object(Bucket=BUCKET, Key="fleet/verify/snap", Body=bytes(data))
    other = make_host(tmp_path, "k3s")
    corrupt = run(other, *checked("verify", "snap", manifest["sha256"]), "--s3-secret-dir", str(secret))
    assert corrupt.returncode == 1 and "is corrupt: sha256" in corrupt.stderr
    assert contents(other / "var/lib/rancher/k3s/server/db/snapshots") == {}

    missing = run(other, *checked("verify", "nope", manifest["sha256"]), "--s3-secret-dir", str(secret))
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"etcd-snapshot: snapshot nope is missing: not in {other}/var/lib/rancher/k3s/server/db/snapshots, and "
        f"s3://{BUCKET}/fleet/verify/nope.manifest.json does not exist")


# --- cluster-reset and rejoin on the host --------------------------------------------------------

@pytest.fixture
def fake_chroot(tmp_path) -> Iterator[tuple[dict[str, str], Path]]:
    """A `chroot` on PATH that records its arguments; FAKE_CHROOT_FAIL makes matching calls fail the way
    RKE2 does (log lines on stderr), FAKE_CHROOT_SHOW lists a host directory at each call."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    log = tmp_path / "chroot.log"
    script = bin_dir / "chroot"
    script.write_text(f"""#!/bin/sh
echo "$*" >> {log}
if [ -n "$FAKE_CHROOT_SHOW" ]; then ls "$1$FAKE_CHROOT_SHOW" | sed 's/^/  has /' >> {log}; fi
if [ -n "$FAKE_CHROOT_FAIL" ]; then
  case "$*" in *"$FAKE_CHROOT_FAIL"*)
    echo 'time="2026-11-28T10:00:00Z" level=info msg="Starting rke2"' >&2
    echo 'time="2026-11-28T10:00:01Z" level=fatal msg="'"$FAKE_CHROOT_MESSAGE"'"' >&2
    exit 1 ;;
  esac
fi
exit 0
""")
    script.chmod(0o755)
    yield {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("dist, unit, binary", [("rke2", "rke2-server", "/usr/local/bin/rke2"), ("k3s", "k3s", "k3s")])
def test_cluster_reset_stops_the_server_resets_from_the_host_path_and_starts_it(tmp_path, member, fake_chroot,
                                                                               dist, unit, binary):
    root = make_host(tmp_path, dist)
    if dist == "rke2":  # where the installer puts it; k3s's is left to the host's PATH here
        (root / "usr/local/bin").mkdir(parents=True)
        (root / "usr/local/bin/rke2").write_text("#!/bin/sh\n")
    manifest = saved(root, member, "snap", dist=dist)
    environ, log = fake_chroot
    done = run(root, *checked("cluster-reset", "snap", manifest["sha256"]), env=environ)
    assert done.returncode == 0, done.stderr
    assert calls(log) == [f"{root} systemctl stop {unit}",
                          f"{root} {binary} {RKE2_RESET.format(dist=dist, name='snap')}",
                          f"{root} systemctl start {unit}"]
    assert [line.split(" ")[1] for line in done.stdout.splitlines()] == [
        "verified", "stopped", "running", "etcd", "started"]  # each step reported, in order
    assert f"etcd-snapshot: running {binary} {RKE2_RESET.format(dist=dist, name='snap')}" in done.stdout
    assert done.stdout.strip().endswith(f"started {unit}")


def test_a_failed_reset_starts_the_service_again_and_says_why(tmp_path, host, member, fake_chroot):
    manifest = saved(host, member, "snap")
    environ, log = fake_chroot
    environ = dict(environ, FAKE_CHROOT_FAIL="--cluster-reset", FAKE_CHROOT_MESSAGE="etcd restore failed: no space")
    done = run(host, *checked("cluster-reset", "snap", manifest["sha256"]), env=environ)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line == ('etcd-snapshot: rke2 server --cluster-reset failed (exit 1): time="2026-11-28T10:00:00Z" '
                    'level=info msg="Starting rke2"; time="2026-11-28T10:00:01Z" level=fatal msg="etcd restore '
                    'failed: no space"; rke2-server started again')
    assert calls(log) == [f"{host} systemctl stop rke2-server",
                          f"{host} rke2 {RKE2_RESET.format(dist='rke2', name='snap')}",
                          f"{host} systemctl start rke2-server"]
    assert "started rke2-server again" in done.stdout


def test_cluster_reset_refused_or_stopped_early_leaves_the_service_alone(tmp_path, host, member, fake_chroot):
    manifest = saved(host, member, "snap")
    environ, log = fake_chroot
    refused = run(host, *checked("cluster-reset", "snap", "f" * 64), env=environ)
    assert refused.returncode == 1 and "not the expected ffff" in refused.stderr
    assert calls(log) == []  # verify refused: the host was not touched

    cannot_stop = run(host, *checked("cluster-reset", "snap", manifest["sha256"]),
                      env=dict(environ, FAKE_CHROOT_FAIL="systemctl stop", FAKE_CHROOT_MESSAGE="unit busy"))
    assert cannot_stop.returncode == 1
    assert cannot_stop.stderr.strip().startswith("etcd-snapshot: systemctl stop rke2-server failed (exit 1): ")
    assert cannot_stop.stderr.strip().endswith('msg="unit busy"')
    assert calls(log) == [f"{host} systemctl stop rke2-server"]  # no reset, nothing started


@pytest.mark.parametrize("dist, unit", [("rke2", "rke2-server"), ("k3s", "k3s")])
def test_rejoin_moves_etcd_aside_between_stop_and_start(tmp_path, fake_chroot, dist, unit):
    root = make_host(tmp_path, dist)
    db = root / f"var/lib/rancher/{dist}/server/db"
    (db / "etcd/member/snap").mkdir(parents=True)
    (db / "etcd/member/snap/db").write_bytes(b"old etcd data")
    (db / "snapshots").mkdir()
    environ, log = fake_chroot
    done = run(root, "rejoin", env=dict(environ, FAKE_CHROOT_SHOW=f"/var/lib/rancher/{dist}/server/db"))
    assert done.returncode == 0, done.stderr
    (aside,) = [p.name for p in db.iterdir() if p.name.startswith("etcd-old-")]
    assert re.fullmatch(r"etcd-old-\d{8}T\d{6}Z", aside)
    assert calls(log) == [f"{root} systemctl stop {unit}", "  has etcd", "  has snapshots",
                          f"{root} systemctl start {unit}", f"  has {aside}", "  has snapshots"]
    assert (db / aside / "member/snap/db").read_bytes() == b"old etcd data" and not (db / "etcd").exists()
    assert done.stdout.splitlines() == [
        f"etcd-snapshot: stopped {unit}",
        f"etcd-snapshot: moved /var/lib/rancher/{dist}/server/db/etcd aside to {aside}",
        f"etcd-snapshot: started {unit}; it joins the restored etcd"]


def test_rejoin_without_etcd_data_and_with_a_failing_stop(tmp_path, host, fake_chroot):
    environ, log = fake_chroot
    done = run(host, "rejoin", env=environ)
    assert done.returncode == 0, done.stderr
    assert "no /var/lib/rancher/rke2/server/db/etcd to move aside" in done.stdout
    assert calls(log) == [f"{host} systemctl stop rke2-server", f"{host} systemctl start rke2-server"]

    log.unlink()
    etcd_dir = host / "var/lib/rancher/rke2/server/db/etcd"
    etcd_dir.mkdir(parents=True)
    failed = run(host, "rejoin", env=dict(environ, FAKE_CHROOT_FAIL="stop", FAKE_CHROOT_MESSAGE="no such unit"))
    assert failed.returncode == 1 and len(failed.stderr.strip().splitlines()) == 1
    assert failed.stderr.startswith("etcd-snapshot: systemctl stop rke2-server failed (exit 1):")
    assert calls(log) == [f"{host} systemctl stop rke2-server"] and etcd_dir.is_dir()

    nowhere = tmp_path / "not-a-server"
    nowhere.mkdir()
    refused = run(nowhere, "rejoin", env=environ)
    assert refused.returncode == 1 and "neither RKE2 nor k3s is installed" in refused.stderr


# --- ETCDSnapshotFile records --------------------------------------------------------------------

def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca.crt, tls.crt, tls.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test kube CA")])
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


FILES = "/apis/k3s.cattle.io/v1/etcdsnapshotfiles"
TOKEN = "test-service-account-token"


class FakeKube:
    """ETCDSnapshotFile over TLS on 127.0.0.1, as kube-apiserver serves a cluster-scoped CRD: 409 on a second
    create, resourceVersion required on update, status dropped from main writes when it is a subresource
    (Corral's CRD) and kept when it is not (k3s's)."""

    def __init__(self, directory: Path) -> None:
        self.ca, cert, key = make_certificates(directory)
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, str, Any]] = []
        self.refuse: tuple[int, str] | None = None
        self.status_subresource = False
        self.version = 100
        self.lock = threading.Lock()
        kube = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with kube.lock:
                    kube.requests.append((self.command, self.path, self.headers.get("Authorization", ""), body))
                    status, answer = kube.answer(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def env(self) -> dict[str, str]:
        """What a pod has: the service's host and port; token and CA given as the overrides."""
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port),
                "ETCD_SNAPSHOT_KUBE_TOKEN": TOKEN, "ETCD_SNAPSHOT_KUBE_CA": str(self.ca),
                "no_proxy": "127.0.0.1", "NO_PROXY": "127.0.0.1"}

    @staticmethod
    def status(code: int, message: str) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}

    def store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.objects[body["metadata"]["name"]] = body
        return copy.deepcopy(body)

    def answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if self.requests[-1][2] != f"Bearer {TOKEN}":
            return 401, self.status(401, "Unauthorized")
        if self.refuse and method != "GET":
            return self.refuse[0], self.status(*self.refuse)
        if not path.startswith(FILES):
            return 404, self.status(404, "the server could not find the requested resource")
        name, _, sub = path[len(FILES):].strip("/").partition("/")
        if method == "POST" and not name:
            name = body["metadata"]["name"]
            if name in self.objects:
                return 409, self.status(409, f'etcdsnapshotfiles.k3s.cattle.io "{name}" already exists')
            if self.status_subresource:
                body = {k: v for k, v in body.items() if k != "status"}
            return 201, self.store(body)
        current = self.objects.get(name)
        if current is None:
            return 404, self.status(404, f'etcdsnapshotfiles.k3s.cattle.io "{name}" not found')
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "DELETE":
            del self.objects[name]
            return 200, {"kind": "Status", "status": "Success"}
        if method == "PUT" and sub == "status" and not self.status_subresource:
            return 404, self.status(404, "the server could not find the requested resource")
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return 409, self.status(409, "the object has been modified; please apply your changes")
            if sub == "status":
                return 200, self.store(dict(current, status=body["status"]))
            if self.status_subresource:
                body = {**{k: v for k, v in body.items() if k != "status"},
                        **({"status": current["status"]} if "status" in current else {})}
            return 200, self.store(body)
        return 405, self.status(405, "method not allowed")

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kube(tmp_path) -> Iterator[FakeKube]:
    directory = tmp_path / "kube"
    directory.mkdir()
    server = FakeKube(directory)
    yield server
    server.stop()


def expected_objects(manifest: dict[str, Any], s3_folder: str | None, s3_url: str = "") -> dict[str, dict]:
    name = manifest["name"]
    spec_metadata = {"corral.io/cluster": "c-demo", "corral.io/kubernetes-version": "v1.15.11",
                     "corral.io/config-version": "3", "corral.io/kind": "manual",
                     "corral.io/sha256": manifest["sha256"], "corral.io/revision": str(manifest["etcd"]["revision"])}
    status = {"size": str(manifest["size"]), "creationTime": manifest["created"], "readyToUse": True}
    objects = {f"local-{name}": {
        "apiVersion": "k3s.cattle.io/v1", "kind": "ETCDSnapshotFile",
        "metadata": {"name": f"local-{name}", "labels": {"etcd.k3s.cattle.io/snapshot-storage-node": "etcd-1",
                                                         "corral.io/snapshot": name}},
        "spec": {"snapshotName": name, "nodeName": "etcd-1",
                 "location": f"file:///var/lib/rancher/rke2/server/db/snapshots/{name}", "metadata": spec_metadata},
        "status": status}}
    if s3_folder is not None:
        objects[f"s3-{name}"] = {
            "apiVersion": "k3s.cattle.io/v1", "kind": "ETCDSnapshotFile",
            "metadata": {"name": f"s3-{name}", "labels": {"etcd.k3s.cattle.io/snapshot-storage-node": "s3",
                                                          "corral.io/snapshot": name}},
            "spec": {"snapshotName": name, "nodeName": "s3", "location": f"s3://{BUCKET}/{s3_folder}/{name}",
                     "metadata": spec_metadata,
                     "s3": {"bucket": BUCKET, "endpoint": s3_url, "region": "us-east-1", "folder": s3_folder,
                            "prefix": s3_folder}},
            "status": status}
    return objects


def test_save_records_etcdsnapshotfile_objects_with_the_service_account(tmp_path, host, member, s3, kube):
    secret = secret_dir(tmp_path, s3, "fleet/rec")
    done = save(host, member, "--name", "snap-rec", "--s3-secret-dir", str(secret), env=kube.env(), record=True)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((host / SNAPSHOTS / "snap-rec.manifest.json").read_text())
    assert [(method, path, auth) for method, path, auth, _ in kube.requests] == [
        ("POST", FILES, f"Bearer {TOKEN}"), ("POST", FILES, f"Bearer {TOKEN}")]
    assert {body["metadata"]["name"]: body for *_, body in kube.requests} == expected_objects(
        manifest, "fleet/rec", s3.url)
    assert "ETCDSnapshotFile local-snap-rec created" in done.stdout
    assert done.stdout.strip().endswith("ETCDSnapshotFile s3-snap-rec created")

    # A name too long for a label value: the label keeps its start and a hash; spec.snapshotName has it all.
    long_name = "a-cluster-with-a-rather-long-name-of-its-own-manual-20261128-100000"
    done = save(host, member, "--name", long_name, env=kube.env(), record=True)
    assert done.returncode == 0, done.stderr
    record = kube.objects[f"local-{long_name}"]
    label = record["metadata"]["labels"]["corral.io/snapshot"]
    assert len(long_name) > 63 and len(label) == 63
    assert label == long_name[:54] + "-" + hashlib.sha256(long_name.encode()).hexdigest()[:8]
    assert record["spec"]["snapshotName"] == long_name


def test_recording_replaces_an_object_on_409_and_writes_a_status_subresource(tmp_path, host, member, kube):
    kube.status_subresource = True  # Corral's own CRD, on clusters before RKE2/k3s 1.26
    kube.store({"apiVersion": "k3s.cattle.io/v1", "kind": "ETCDSnapshotFile",
                "metadata": {"name": "local-snap-x"}, "spec": {"snapshotName": "stale"}})
    done = save(host, member, "--name", "snap-x", env=kube.env(), record=True)
    assert done.returncode == 0, done.stderr
    assert kube.writes() == [("POST", FILES), ("GET", f"{FILES}/local-snap-x"), ("PUT", f"{FILES}/local-snap-x"),
                             ("PUT", f"{FILES}/local-snap-x/status")]
    assert kube.requests[2][3]["metadata"]["resourceVersion"] == "101"
    manifest = json.loads((host / SNAPSHOTS / "snap-x.manifest.json").read_text())
    stored = dict(kube.objects["local-snap-x"])
    stored["metadata"] = {k: v for k, v in stored["metadata"].items() if k != "resourceVersion"}
    assert stored == expected_objects(manifest, None)["local-snap-x"]
    assert "ETCDSnapshotFile local-snap-x replaced" in done.stdout


def test_a_refused_record_fails_the_save_and_a_second_run_records_what_is_missing(tmp_path, host, member, kube):
    message = ('etcdsnapshotfiles.k3s.cattle.io is forbidden: User "system:serviceaccount:system-upgrade:'
               'system-upgrade" cannot create resource "etcdsnapshotfiles" in API group "k3s.cattle.io"')
    kube.refuse = (403, message)
    done = save(host, member, "--name", "snap-f", env=kube.env(), record=True)
    assert done.returncode == 1
    assert done.stderr.strip() == f"etcd-snapshot: recording ETCDSnapshotFile local-snap-f failed: HTTP 403: {message}"
    files = contents(host / SNAPSHOTS)
    assert sorted(files) == ["snap-f", "snap-f.manifest.json"]  # the snapshot itself is saved

    kube.refuse = None
    kube.requests.clear()
    again = save(host, member, "--name", "snap-f", env=kube.env(), record=True)
    assert again.returncode == 0, again.stderr
    assert "snap-f already saved" in again.stdout and "ETCDSnapshotFile local-snap-f created" in again.stdout
    assert contents(host / SNAPSHOTS) == files and kube.writes() == [("POST", FILES)]
    kube.requests.clear()
    third = save(host, member, "--name", "snap-f", env=kube.env(), record=True)
    assert third.returncode == 0 and "ETCDSnapshotFile local-snap-f already there" in third.stdout
    assert kube.writes() == [("POST", FILES)]  # a record that is there is left as it is


def test_recording_needs_https_and_an_api_before_anything_is_saved(tmp_path, host, member, kube):
    plain = save(host, member, "--name", "snap", record=True, env={"ETCD_SNAPSHOT_KUBE_API": f"http://127.0.0.1:{kube.port}",
                                                                  "ETCD_SNAPSHOT_KUBE_TOKEN": TOKEN})
    assert plain.returncode == 1
    assert plain.stderr.strip() == (f"etcd-snapshot: the Kubernetes API must be reached over https, not "
                                    f"http://127.0.0.1:{kube.port}")
    outside = save(host, member, "--name", "snap", record=True)
    assert outside.returncode == 1 and "no KUBERNETES_SERVICE_HOST (not in a pod)" in outside.stderr
    untrusted = save(host, member, "--name", "snap", record=True,
                     env={"ETCD_SNAPSHOT_KUBE_API": f"https://127.0.0.1:{kube.port}", "ETCD_SNAPSHOT_KUBE_TOKEN": TOKEN,
                          "ETCD_SNAPSHOT_KUBE_CA": str(image.SCRIPT)})
    assert untrusted.returncode == 1 and "cannot load the Kubernetes API's CA" in untrusted.stderr
    assert contents(host / SNAPSHOTS) == {} and kube.requests == []


# --- delete --------------------------------------------------------------------------------------

def bucket_keys(s3: S3, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_delete_removes_the_files_here_and_in_the_bucket_and_the_records(tmp_path, host, member, s3, kube):
    secret = secret_dir(tmp_path, s3, "fleet/del")
    for name in ("snap-a", "snap-b", "snap-c"):
        saved(host, member, name, "--s3-secret-dir", str(secret), env=kube.env(), record=True)
    assert sorted(kube.objects) == ["local-snap-a", "local-snap-b", "local-snap-c", "s3-snap-a", "s3-snap-b",
                                    "s3-snap-c"]
    kube.requests.clear()

    done = run(host, "delete", "--snapshot", "snap-a", "--snapshot", "snap-b", "--snapshot", "never-saved",
               "--s3-secret-dir", str(secret), env=kube.env())
    assert done.returncode == 0, done.stderr
    assert sorted(contents(host / SNAPSHOTS)) == ["snap-c", "snap-c.manifest.json"]
    assert bucket_keys(s3, "fleet/del/") == ["fleet/del/snap-c", "fleet/del/snap-c.manifest.json"]
    assert sorted(kube.objects) == ["local-snap-c", "s3-snap-c"]
    assert kube.writes() == [("DELETE", f"{FILES}/{prefix}-{name}") for name in ("snap-a", "snap-b", "never-saved")
                             for prefix in ("local", "s3")]
    assert f"etcd-snapshot: removed snap-a.manifest.json and snap-a from {host / SNAPSHOTS}" in done.stdout
    assert f"etcd-snapshot: never-saved is not in {host / SNAPSHOTS}" in done.stdout
    assert "ETCDSnapshotFile s3-never-saved was not there" in done.stdout

    again = run(host, "delete", "--snapshot", "snap-a", "--s3-secret-dir", str(secret), env=kube.env())
    assert again.returncode == 0, again.stderr  # what is gone already is no error

    # Local only: the bucket and the records stay.
    local = run(host, "delete", "--snapshot", "snap-c", "--no-record")
    assert local.returncode == 0, local.stderr
    assert contents(host / SNAPSHOTS) == {}
    assert bucket_keys(s3, "fleet/del/") == ["fleet/del/snap-c", "fleet/del/snap-c.manifest.json"]
    assert sorted(kube.objects) == ["local-snap-c", "s3-snap-c"]


def test_delete_refuses_names_that_are_paths(tmp_path, host):
    outside = host / "var/lib/rancher/rke2/server/db/keep"
    outside.parent.mkdir(parents=True)
    outside.write_text("keep")
    done = run(host, "delete", "--snapshot", "../keep", "--no-record")
    assert done.returncode == 1 and done.stderr.strip() == "etcd-snapshot: invalid snapshot name '../keep'"
    assert outside.read_text() == "keep"


def test_a_failing_api_fails_delete_with_its_message(tmp_path, host, member, kube):
    saved(host, member, "snap")
    kube.refuse = (500, "etcdserver: request timed out")
    done = run(host, "delete", "--snapshot", "snap", env=kube.env())
    assert done.returncode == 1
    assert done.stderr.strip() == ("etcd-snapshot: deleting ETCDSnapshotFile local-snap failed: HTTP 500: "
                                   "etcdserver: request timed out")


def test_the_image_runs_the_hosts_tools_and_installs_none():
    containerfile = (image.SCRIPT.parent / "Containerfile").read_text()
    assert "chroot" in containerfile and 'ENTRYPOINT ["/usr/local/bin/etcd-snapshot"]' in containerfile
    assert not re.search(r"^RUN .*(rke2|k3s)", containerfile, re.M)
    assert subprocess.run([sys.executable, str(image.SCRIPT), "--help"], capture_output=True, text=True,
                          timeout=30).stdout.count("cluster-reset") >= 1
