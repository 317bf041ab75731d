"""Corral's etcd-snapshot image script against a real etcd (Debian's etcd-server/etcd-client) and a
real S3 server (moto's server mode), both on loopback, with a temporary directory as the host root.

CI installs etcd (.ci/run) and must run these: without etcd they fail under CI=true, and skip
(saying why) only on a developer's machine.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "backups/images/etcd-snapshot/etcd-snapshot.py"
SNAPSHOTS = "var/lib/rancher/rke2/server/db/snapshots"
BUCKET = "corral-snapshots"


def require_etcd() -> None:
    """A test that skips in CI is a test that is not there: fail there, skip only locally."""
    missing = [tool for tool in ("etcd", "etcdctl") if shutil.which(tool) is None]
    if not missing:
        return
    reason = f"{' and '.join(missing)} not installed (apt-get install etcd-server etcd-client)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must have etcd: {reason}; .ci/run installs it")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on 127.0.0.1:{port} in {seconds}s")


@dataclass
class Etcd:
    """One etcd member on loopback."""

    process: subprocess.Popen
    client_url: str
    peer_url: str
    name: str

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["etcdctl", f"--endpoints={self.client_url}", *args], capture_output=True,
                              text=True, timeout=30, env=dict(os.environ, ETCDCTL_API="3"))

    def put(self, key: str, value: str) -> None:
        done = self.ctl("put", key, value)
        assert done.returncode == 0, done.stderr

    def get(self, key: str) -> str | None:
        done = self.ctl("get", key, "--print-value-only")
        assert done.returncode == 0, done.stderr
        return done.stdout.strip() or None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_etcd(data_dir: Path, log: Path, name: str = "node-1", peer_port: int | None = None) -> Etcd:
    """etcd on free loopback ports; a restored data dir needs the peer port it was restored with."""
    client_url = f"http://127.0.0.1:{free_port()}"
    peer_url = f"http://127.0.0.1:{peer_port or free_port()}"
    args = ["etcd", f"--name={name}", f"--data-dir={data_dir}", f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}", f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}", f"--initial-cluster={name}={peer_url}"]
    handle = log.open("ab")
    process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    member = Etcd(process, client_url, peer_url, name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"etcd exited with {process.returncode}: {log.read_text()[-2000:]}")
        if member.ctl("endpoint", "health").returncode == 0:
            return member
        time.sleep(0.2)
    member.stop()
    raise AssertionError(f"etcd did not become healthy: {log.read_text()[-2000:]}")


@pytest.fixture
def etcds(tmp_path) -> Iterator[list[Etcd]]:
    """Every etcd a test starts, stopped at its end."""
    require_etcd()
    started: list[Etcd] = []
    yield started
    for member in started:
        member.stop()


@pytest.fixture
def host(tmp_path) -> Path:
    """A directory standing for an RKE2 server node's root."""
    root = tmp_path / "host"
    (root / "etc/rancher/rke2").mkdir(parents=True)
    return root


def run(host: Path, mode: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_SNAPSHOT_", "AWS_", "KUBERNETES_"))}
    environ.update(env or {})
    return subprocess.run([sys.executable, str(SCRIPT), mode, "--host-root", str(host), *args], capture_output=True,
                          text=True, env=environ, timeout=120)


def save(host: Path, member: Etcd, *args: str, env: dict[str, str] | None = None,
         record: bool = False) -> subprocess.CompletedProcess:
    """The save Plan's arguments; ETCDSnapshotFile recording off unless a test has an API server for it."""
    return run(host, "save", "--endpoint", member.client_url, "--cluster", "c-demo", "--cluster-name", "demo",
               "--kubernetes-version", "v1.15.11", "--config-version", "3", "--node-name", "etcd-1",
               *(() if record else ("--no-record",)), *args, env=env)


def restore_args(name: str, data_dir: Path, peer_port: int) -> list[str]:
    peer = f"http://127.0.0.1:{peer_port}"
    return ["--snapshot", name, "--data-dir", str(data_dir), "--name", "node-1",
            "--initial-cluster", f"node-1={peer}", "--initial-advertise-peer-urls", peer]


def test_save_writes_a_verified_snapshot_and_manifest_and_restore_brings_back_the_old_keys(tmp_path, host, etcds):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    member.put("/registry/deployments/default/web", "v1")
    member.put("/registry/configmaps/kube-system/max-pods", "110")
    config = tmp_path / "config.json"
    document = {"kubernetes_version": "v1.15.11", "services": {"kubelet": {"extra_args": {"max-pods": "110"}}}}
    config.write_text(json.dumps(document))

    done = save(host, member, "--config-file", str(config), "--name", "on-demand-etcd-1-1")
    assert done.returncode == 0, done.stderr
    snapshot = host / SNAPSHOTS / "on-demand-etcd-1-1"
    manifest = json.loads((host / SNAPSHOTS / "on-demand-etcd-1-1.manifest.json").read_text())
    status = subprocess.run(["etcdctl", "snapshot", "status", str(snapshot), "-w", "json"], capture_output=True,
                            text=True, env=dict(os.environ, ETCDCTL_API="3"), timeout=30)
    assert status.returncode == 0, status.stderr
    assert manifest["sha256"] == hashlib.sha256(snapshot.read_bytes()).hexdigest()
    assert manifest["size"] == snapshot.stat().st_size
    assert manifest["etcd"]["revision"] == json.loads(status.stdout)["revision"] >= 3
    assert manifest["etcd"]["keys"] == json.loads(status.stdout)["totalKey"]
    assert {k: manifest[k] for k in ("format", "name", "cluster", "cluster_name", "kubernetes_version",
                                     "config_version", "kind", "node", "distribution", "s3")} == {
        "format": "corral.etcd-snapshot/v1", "name": "on-demand-etcd-1-1", "cluster": "c-demo",
        "cluster_name": "demo", "kubernetes_version": "v1.15.11", "config_version": 3, "kind": "manual",
        "node": "etcd-1", "distribution": "rke2", "s3": None}
    assert manifest["inventory"] == [["configmaps", "kube-system", "max-pods"], ["deployments.apps", "default", "web"]]
    assert manifest["config"] == document and manifest["created"].endswith("Z")
    assert oct(snapshot.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in (host / SNAPSHOTS).iterdir()) == [
        "on-demand-etcd-1-1", "on-demand-etcd-1-1.manifest.json"]  # no temporary files left

    member.put("/registry/deployments/default/after", "written after the snapshot")
    member.stop()
    restored_dir = tmp_path / "restored"
    peer_port = free_port()
    done = run(host, "restore", *restore_args("on-demand-etcd-1-1", restored_dir, peer_port))
    assert done.returncode == 0, done.stderr
    assert "restored on-demand-etcd-1-1 (cluster c-demo, Kubernetes v1.15.11" in done.stdout
    again = start_etcd(restored_dir, tmp_path / "etcd-restored.log", peer_port=peer_port)
    etcds.append(again)
    assert again.get("/registry/deployments/default/web") == "v1"
    assert again.get("/registry/configmaps/kube-system/max-pods") == "110"
    assert again.get("/registry/deployments/default/after") is None

    refused = run(host, "restore", *restore_args("on-demand-etcd-1-1", restored_dir, free_port()))
    assert refused.returncode == 1 and "already exists; restore only into a new one" in refused.stderr


def test_recurring_snapshots_get_k3s_style_names_and_config_from_the_environment(tmp_path, host, etcds):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    member.put("a", "1")
    done = save(host, member, "--kind", "recurring", env={"ETCD_SNAPSHOT_CONFIG": '{"kubernetes_version": "v1.15.11"}'})
    assert done.returncode == 0, done.stderr
    (manifest_path,) = (host / SNAPSHOTS).glob("*.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["name"].startswith("etcd-snapshot-etcd-1-") and manifest["kind"] == "recurring"
    assert manifest["config"] == {"kubernetes_version": "v1.15.11"}
    listed = run(host, "list")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == manifest["name"] and entry["location"]["type"] == "local"


def test_a_tampered_or_missing_snapshot_is_refused_before_anything_changes(tmp_path, host, etcds):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    member.put("a", "1")
    assert save(host, member, "--name", "snap").returncode == 0
    snapshot = host / SNAPSHOTS / "snap"
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    target = tmp_path / "restored"

    corrupt = run(host, "restore", *restore_args("snap", target, free_port()))
    assert corrupt.returncode == 1
    assert "snapshot" in corrupt.stderr and "is corrupt: sha256" in corrupt.stderr
    assert len(corrupt.stderr.strip().splitlines()) == 1
    assert not target.exists() and not (tmp_path / ".restored.restoring").exists()

    snapshot.write_bytes(bytes(data[:-100]))
    truncated = run(host, "restore", *restore_args("snap", target, free_port()))
    assert truncated.returncode == 1 and "truncated or replaced" in truncated.stderr and not target.exists()

    snapshot.unlink()
    missing = run(host, "restore", *restore_args("snap", target, free_port()))
    assert missing.returncode == 1 and "snapshot snap is missing" in missing.stderr and not target.exists()


def test_restore_refuses_a_snapshot_of_another_cluster(tmp_path, host, etcds):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    assert save(host, member, "--name", "snap").returncode == 0
    target = tmp_path / "restored"
    refused = run(host, "restore", *restore_args("snap", target, free_port()), "--expect-cluster", "c-other")
    assert refused.returncode == 1 and "belongs to cluster 'c-demo', not 'c-other'" in refused.stderr
    assert not target.exists()


# --- S3 -------------------------------------------------------------------------------------------

@dataclass
class S3:
    url: str
    access_key: str
    secret_key: str

    def client(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3]:
    """moto's server on loopback with authentication on: an IAM user's key works, any other does not."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    handle = log.open("wb")
    # The first three requests (creating the user, its key and its policy) go unauthenticated.
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                               env=dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3"))
    handle.close()
    try:
        wait_for_port(port, process, "moto server")
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


def secret_dir(tmp_path: Path, s3: S3, folder: str, **override: str) -> Path:
    """The S3 Secret as Kubernetes mounts it: one file per key."""
    directory = tmp_path / f"s3-secret-{folder.replace('/', '-')}"
    directory.mkdir(exist_ok=True)
    values = {"bucket": BUCKET, "endpoint": s3.url, "region": "us-east-1", "folder": folder,
              "access-key": s3.access_key, "secret-key": s3.secret_key, **override}
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
    return directory


def test_save_uploads_both_objects_under_the_folder_and_list_rediscovers_from_the_bucket_alone(
        tmp_path, host, etcds, s3):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    member.put("/registry/pods/default/p", "1")
    secret = secret_dir(tmp_path, s3, "fleet/c-demo")
    done = save(host, member, "--name", "snap-s3", "--s3-secret-dir", str(secret))
    assert done.returncode == 0, done.stderr
    keys = sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="fleet/c-demo/")["Contents"])
    assert keys == ["fleet/c-demo/snap-s3", "fleet/c-demo/snap-s3.manifest.json"]
    body = s3.client().get_object(Bucket=BUCKET, Key="fleet/c-demo/snap-s3")["Body"].read()
    local = (host / SNAPSHOTS / "snap-s3").read_bytes()
    assert body == local
    manifest = json.loads(s3.client().get_object(Bucket=BUCKET, Key="fleet/c-demo/snap-s3.manifest.json")["Body"]
                          .read())
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    assert manifest["s3"] == {"bucket": BUCKET, "endpoint": s3.url, "region": "us-east-1", "folder": "fleet/c-demo",
                              "key": "fleet/c-demo/snap-s3"}

    # A portal that lost its database, on a node that lost its disk: the bucket alone is enough.
    empty_host = tmp_path / "empty-host"
    empty_host.mkdir()
    listed = run(empty_host, "list", "--no-local", "--s3-secret-dir", str(secret))
    assert listed.returncode == 0, listed.stderr
    (found,) = json.loads(listed.stdout)
    assert found["name"] == "snap-s3" and found["cluster"] == "c-demo" and found["sha256"] == manifest["sha256"]
    assert found["location"] == {"type": "s3", "bucket": BUCKET, "key": "fleet/c-demo/snap-s3.manifest.json",
                                 "endpoint": s3.url}

    # ... and restore fetches it from there, verifies it, and brings the keys back.
    fresh = tmp_path / "fresh-host"
    (fresh / "etc/rancher/rke2").mkdir(parents=True)
    member.stop()
    peer_port = free_port()
    restored = run(fresh, "restore", *restore_args("snap-s3", tmp_path / "from-s3", peer_port),
                   env={"ETCD_SNAPSHOT_S3_SECRET_DIR": str(secret)})
    assert restored.returncode == 0, restored.stderr
    assert "fetched snap-s3 and its manifest" in restored.stdout
    again = start_etcd(tmp_path / "from-s3", tmp_path / "etcd-restored.log", peer_port=peer_port)
    etcds.append(again)
    assert again.get("/registry/pods/default/p") == "1"


def test_s3_settings_from_environment_variables(tmp_path, host, etcds, s3):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    env = {"ETCD_SNAPSHOT_S3_BUCKET": BUCKET, "ETCD_SNAPSHOT_S3_ENDPOINT": s3.url, "ETCD_SNAPSHOT_S3_FOLDER": "env",
           "ETCD_SNAPSHOT_S3_ACCESS_KEY": s3.access_key, "ETCD_SNAPSHOT_S3_SECRET_KEY": s3.secret_key}
    done = save(host, member, "--name", "snap-env", env=env)
    assert done.returncode == 0, done.stderr
    keys = sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=BUCKET, Prefix="env/")["Contents"])
    assert keys == ["env/snap-env", "env/snap-env.manifest.json"]


@pytest.mark.parametrize("override, reason", [
    ({"secret-key": "not-the-secret"}, "SignatureDoesNotMatch"),
    ({"bucket": "no-such-bucket"}, "NoSuchBucket"),
])
def test_a_wrong_key_or_bucket_fails_with_the_reason_before_etcd_is_touched(tmp_path, host, etcds, s3, override,
                                                                          reason):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    done = save(host, member, "--name", "snap-bad", "--s3-secret-dir", str(secret_dir(tmp_path, s3, "bad", **override)))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("etcd-snapshot: S3 access check in s3://") and reason in line
    assert not (host / SNAPSHOTS / "snap-bad").exists()


def test_an_unreachable_endpoint_fails_with_the_reason(tmp_path, host, etcds, s3):
    member = start_etcd(tmp_path / "etcd-data", tmp_path / "etcd.log")
    etcds.append(member)
    nowhere = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = save(host, member, "--name", "snap-away", "--s3-secret-dir",
                str(secret_dir(tmp_path, s3, "away", endpoint=nowhere)))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert f"at {nowhere} failed: Could not connect to the endpoint URL" in line
    assert time.monotonic() - started < 60


def test_missing_s3_keys_and_unreachable_etcd_are_reported(tmp_path, host, etcds):
    require_etcd()
    no_keys = run(host, "save", "--no-record", "--endpoint", "http://127.0.0.1:1",
                  env={"ETCD_SNAPSHOT_S3_BUCKET": BUCKET})
    assert no_keys.returncode == 1 and "without access-key and secret-key" in no_keys.stderr
    down = run(host, "save", "--no-record", "--endpoint", f"http://127.0.0.1:{free_port()}", "--name", "x")
    assert down.returncode == 1 and "etcd-snapshot: etcd at http://127.0.0.1:" in down.stderr
    assert "is unhealthy" in down.stderr and len(down.stderr.strip().splitlines()) == 1
    assert not (host / SNAPSHOTS / "x").exists() and not list((host / SNAPSHOTS).glob(".*"))
    tls = run(host, "save", "--no-record", "--name", "x")  # the default endpoint is https with RKE2's client certificate
    assert tls.returncode == 1
    assert f"{host}/var/lib/rancher/rke2/server/tls/etcd/server-ca.crt" in tls.stderr
