"""Taking, recording and deleting snapshots: what the snapshot and delete jobs run.

etcd snapshots (rke and k3s clusters) are saved on one Ready etcd node by the corral/etcd-snapshot
image through a Plan; the image records them as ETCDSnapshotFile objects, which is what Corral reads
back. Resource backups (imported clusters) are made by Corral through the API (``resources.py``) and
kept in the backup target's bucket or under ``BACKUP_DIR``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from backups import s3
from backups.etcd import SNAPSHOT_FILES, EtcdNodes, Step, StepFailed
from backups.models import Snapshot
from clusters import config, kube
from clusters.models import Cluster
from clusters.nodeops import ClusterApi
from clusters.nodeops.suc import ControllerMissing
from portal.jobs import JobFailed, NullReporter, Reporter

S = Snapshot.State


def api_for(cluster: Cluster) -> ClusterApi:
    return ClusterApi(cluster.kubeconfig, insecure_tls=cluster.insecure_tls)


def cluster_identity(cluster: Cluster) -> str:
    from backups.resources import BackupError
    from backups.resources import cluster_identity as identity_of

    api = api_for(cluster)
    try:
        return identity_of(api)
    except BackupError as exc:
        raise JobFailed(f"{cluster.name} cannot be reached: {exc.reason}") from None
    finally:
        api.close()


def s3_settings(snapshot: Snapshot) -> dict[str, str]:
    """The Secret's S3 files (none without a target: the nodes' disks only)."""
    target = snapshot.target
    if target is None:
        return {}
    return {"bucket": target.bucket, "endpoint": s3.url(target), "region": target.region or "us-east-1",
            "folder": target.folder.strip("/"), "access-key": target.access_key, "secret-key": target.secret_key,
            **({"endpoint-ca": target.endpoint_ca} if target.endpoint_ca.strip() else {})}


def _fail(snapshot: Snapshot, reason: str) -> None:
    Snapshot.objects.filter(pk=snapshot.pk).update(state=S.FAILED, reason=reason[:2000])


def take(snapshot: Snapshot, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run one snapshot to the end; the row ends Ready or Failed with the reason (and the job fails too)."""
    reporter = reporter or NullReporter()
    Snapshot.objects.filter(pk=snapshot.pk).update(state=S.SAVING, reason="")
    try:
        if snapshot.kind == Snapshot.Kind.RESOURCES:
            result = _take_resources(snapshot, reporter)
        else:
            result = _take_etcd(snapshot, reporter)
    except (StepFailed, ControllerMissing, s3.TargetError) as exc:
        reason = str(getattr(exc, "reason", exc))
        _fail(snapshot, reason)
        raise JobFailed(reason) from None
    except (kube.ClusterError, kube.KubeconfigError) as exc:
        reason = f"{snapshot.cluster.name} could not be used: {getattr(exc, 'reason', exc)}"
        _fail(snapshot, reason)
        raise JobFailed(reason) from None
    except JobFailed as exc:
        _fail(snapshot, str(exc))
        raise
    except Exception as exc:
        _fail(snapshot, f"unexpected error: {exc.__class__.__name__}: {exc}")
        raise
    if snapshot.trigger == Snapshot.Trigger.RECURRING:
        prune_beyond_retention(snapshot.cluster, reporter)
    if snapshot.kind == Snapshot.Kind.ETCD:
        _reconcile_quietly(snapshot.cluster, reporter)
    return result


def _reconcile_quietly(cluster: Cluster, reporter: Reporter) -> None:
    try:
        found = reconcile_cluster(cluster)
    except (kube.ClusterError, kube.KubeconfigError) as exc:
        reporter.log(f"Could not compare the cluster's snapshot records: {getattr(exc, 'reason', exc)}", "warning")
        return
    if found["added"]:
        reporter.log(f"Found snapshots recorded in the cluster that Corral did not know: {', '.join(found['added'])}")
    if found["missing"]:
        reporter.log(f"Snapshots whose records are gone from the cluster (now Missing): {', '.join(found['missing'])}",
                     "warning")


def _config(cluster: Cluster) -> tuple[int | None, dict[str, Any]]:
    latest = cluster.config
    return (latest.version if latest else None), config.current_document(cluster)


def _take_etcd(snapshot: Snapshot, reporter: Reporter) -> dict[str, Any]:
    cluster = snapshot.cluster
    api = api_for(cluster)
    try:
        nodes = EtcdNodes(cluster, api, log=reporter.log, checkpoint=reporter.checkpoint)
        reporter.progress(5, "finding an etcd node")
        uid = nodes.identity()
        etcd = nodes.etcd_nodes()
        if not etcd:
            raise StepFailed(f"{cluster.name} has no Ready etcd node to take the snapshot on")
        node = etcd[0]["metadata"]["name"]
        nodes.ensure_records()
        version = api.version()
        config_version, document = _config(cluster)
        Snapshot.objects.filter(pk=snapshot.pk).update(node=node, cluster_uid=uid, kubernetes_version=version,
                                                       config_version=config_version, config_document=document)
        reporter.progress(20, f"saving etcd on {node}")
        args = ["save", "--name", snapshot.name, "--cluster", uid, "--cluster-name", cluster.name,
                "--kubernetes-version", version, "--config-version", str(config_version or 0),
                "--kind", "recurring" if snapshot.recurring else "manual"]
        secret = {"config.json": json.dumps(document, sort_keys=True), **s3_settings(snapshot)}
        nodes.run(Step(f"corral-snap-{snapshot.pk}", args, [node], secret))
        reporter.progress(90, "reading the snapshot's record")
        record = _record(api, f"local-{snapshot.name}")
        if record is None:
            raise StepFailed(f"the image saved {snapshot.name} on {node} but recorded no ETCDSnapshotFile "
                             f"local-{snapshot.name}")
        fields = fields_from_record(record)
        if snapshot.target is not None:
            s3_record = _record(api, f"s3-{snapshot.name}")
            if s3_record is None:
                raise StepFailed(f"{snapshot.name} has no copy recorded in {snapshot.target.location}")
            fields["s3_location"] = (s3_record.get("spec") or {}).get("location", "")
        Snapshot.objects.filter(pk=snapshot.pk).update(state=S.READY, reason="", **fields)
        reporter.log(f"Snapshot {snapshot.name} saved on {node}: {fields.get('size')} bytes, sha256 "
                     f"{fields.get('sha256', '')[:12]}…, etcd revision {fields.get('etcd_revision')}"
                     + (f", copied to {fields['s3_location']}" if fields.get("s3_location") else ""))
        return {"snapshot": snapshot.pk, "name": snapshot.name, "node": node, **{
            k: fields.get(k) for k in ("size", "sha256", "etcd_revision", "s3_location")}}
    finally:
        api.close()


def _record(api: ClusterApi, name: str) -> dict[str, Any] | None:
    return api.exists(f"{SNAPSHOT_FILES}/{name}")


def fields_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """Snapshot fields from an ETCDSnapshotFile (spec.metadata holds the manifest's summary)."""
    spec, status = record.get("spec") or {}, record.get("status") or {}
    meta = spec.get("metadata") or {}
    size = status.get("size")
    try:
        size = int(str(size)) if size is not None else None
    except ValueError:
        size = None
    revision = meta.get("corral.io/revision")
    return {
        "location": spec.get("location", ""),
        "node": spec.get("nodeName", "") if spec.get("nodeName") != "s3" else "",
        "size": size,
        "sha256": meta.get("corral.io/sha256", ""),
        "etcd_revision": int(revision) if str(revision or "").isdigit() else None,
        "kubernetes_version": meta.get("corral.io/kubernetes-version", ""),
        "cluster_uid": meta.get("corral.io/cluster", ""),
        "taken_at": parse_datetime(status["creationTime"]) if status.get("creationTime") else timezone.now(),
        "manifest": {"record": record.get("metadata", {}).get("name"), "spec": spec},
    }


# ---------------------------------------------------------------------- resource backups (imported)
def archive_path(snapshot: Snapshot) -> Path:
    return Path(settings.BACKUP_DIR) / str(snapshot.cluster_id) / f"{snapshot.name}.json.gz"


def _take_resources(snapshot: Snapshot, reporter: Reporter) -> dict[str, Any]:
    from backups import resources

    cluster = snapshot.cluster
    filters = (snapshot.manifest or {}).get("filters") or {}
    api = api_for(cluster)
    try:
        reporter.progress(5, "listing the API's resources")
        archive, manifest = resources.dump(api, cluster_name=cluster.name, **filters,
                                           progress=lambda pct, msg: reporter.progress(5 + int(pct * 0.8), msg))
    finally:
        api.close()
    digest = hashlib.sha256(archive).hexdigest()
    manifest = {**manifest, "name": snapshot.name, "size": len(archive), "sha256": digest}
    if snapshot.target is not None:
        reporter.progress(90, f"uploading to {snapshot.target.location}")
        with s3.Bucket(snapshot.target) as bucket:
            bucket.check()
            bucket.put(f"{snapshot.name}.json.gz", archive)
            bucket.put(f"{snapshot.name}{s3.MANIFEST_SUFFIX}", json.dumps(manifest).encode())
        location = f"{snapshot.target.location}/{snapshot.name}.json.gz"
    else:
        path = archive_path(snapshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(archive)
        path.with_name(f"{snapshot.name}{s3.MANIFEST_SUFFIX}").write_text(json.dumps(manifest))
        location = f"file://{path}"
    version = manifest.get("server_version") or manifest.get("kubernetes_version") or cluster.kubernetes_version
    config_version, document = _config(cluster)
    Snapshot.objects.filter(pk=snapshot.pk).update(
        state=S.READY, reason="", size=len(archive), sha256=digest, location=location,
        s3_location=location if snapshot.target is not None else "", cluster_uid=manifest.get("cluster", ""),
        kubernetes_version=version or "", config_version=config_version, config_document=document,
        manifest=manifest, taken_at=timezone.now())
    count = sum((manifest.get("counts") or {}).values())
    reporter.log(f"Resource backup {snapshot.name}: {count} objects, {len(archive)} bytes, sha256 {digest[:12]}…")
    return {"snapshot": snapshot.pk, "name": snapshot.name, "objects": count, "size": len(archive), "sha256": digest}


def read_archive(snapshot: Snapshot) -> bytes:
    if snapshot.target is not None and snapshot.s3_location:
        with s3.Bucket(snapshot.target) as bucket:
            return bucket.get(f"{snapshot.name}.json.gz")
    path = archive_path(snapshot)
    if not path.exists():
        raise StepFailed(f"the archive of {snapshot.name} is missing ({path})")
    return path.read_bytes()


# ---------------------------------------------------------------------- delete and retention
def delete(snapshots: list[Snapshot], reporter: Reporter | None = None) -> dict[str, Any]:
    """Remove snapshots from the nodes, the bucket, the cluster's records and Corral."""
    reporter = reporter or NullReporter()
    if not snapshots:
        return {"deleted": []}
    cluster = snapshots[0].cluster
    etcd = [s for s in snapshots if s.kind == Snapshot.Kind.ETCD]
    others = [s for s in snapshots if s.kind != Snapshot.Kind.ETCD]
    deleted = []
    for snapshot in others:
        try:
            if snapshot.target is not None and snapshot.s3_location:
                with s3.Bucket(snapshot.target) as bucket:
                    bucket.delete(f"{snapshot.name}.json.gz")
                    bucket.delete(f"{snapshot.name}{s3.MANIFEST_SUFFIX}")
            else:
                path = archive_path(snapshot)
                path.unlink(missing_ok=True)
                path.with_name(f"{snapshot.name}{s3.MANIFEST_SUFFIX}").unlink(missing_ok=True)
        except s3.TargetError as exc:
            raise JobFailed(f"could not delete {snapshot.name}: {exc}") from None
        deleted.append(snapshot.name)
        snapshot.delete()
    if etcd:
        api = api_for(cluster)
        try:
            nodes = EtcdNodes(cluster, api, log=reporter.log, checkpoint=reporter.checkpoint)
            live = {n["metadata"]["name"] for n in nodes.etcd_nodes()}
            by_target: dict[int | None, list[Snapshot]] = {}
            for snapshot in etcd:
                by_target.setdefault(snapshot.target_id, []).append(snapshot)
            for group in by_target.values():
                holders = sorted({s.node for s in group if s.node in live}) or sorted(live)[:1]
                if not holders:
                    raise JobFailed(f"{cluster.name} has no Ready etcd node to delete snapshots on")
                args = ["delete"] + [a for s in group for a in ("--snapshot", s.name)]
                plan = f"corral-prune-{group[0].pk}"
                nodes.run(Step(plan, args, holders, s3_settings(group[0])))
                for snapshot in group:
                    deleted.append(snapshot.name)
                    snapshot.delete()
        except StepFailed as exc:
            raise JobFailed(f"could not delete the snapshots: {exc}") from None
        except (kube.ClusterError, kube.KubeconfigError) as exc:
            raise JobFailed(f"{cluster.name} could not be used: {getattr(exc, 'reason', exc)}") from None
        finally:
            api.close()
    reporter.log(f"Deleted {', '.join(deleted)}")
    return {"deleted": deleted}


def prune_beyond_retention(cluster: Cluster, reporter: Reporter) -> list[str]:
    from backups.services import beyond_retention

    old = beyond_retention(cluster)
    if not old:
        return []
    reporter.log(f"Retention: deleting {len(old)} recurring snapshot(s) beyond the last "
                 f"{len(cluster.snapshots.filter(trigger=Snapshot.Trigger.RECURRING, state=S.READY)) - len(old)}: "
                 + ", ".join(s.name for s in old))
    try:
        return delete(old, reporter)["deleted"]
    except JobFailed as exc:
        reporter.log(f"Retention could not delete old snapshots: {exc}", "warning")
        return []


# ---------------------------------------------------------------------- reconcile with the cluster
def reconcile_cluster(cluster: Cluster) -> dict[str, list[str]]:
    """Read the cluster's ETCDSnapshotFile records and reconcile Corral's snapshots with them."""
    if cluster.kind not in (Cluster.Kind.RKE, Cluster.Kind.K3S):
        return {"added": [], "missing": []}
    api = api_for(cluster)
    try:
        listed = api.exists(SNAPSHOT_FILES)
    finally:
        api.close()
    if listed is None:
        return {"added": [], "missing": []}  # the cluster does not serve the records (yet): nothing to compare
    return reconcile(cluster, listed.get("items") or [])


def reconcile_fleet(reporter: Reporter | None = None, threads: int = 8) -> dict[str, Any]:
    """Reconcile every rke/k3s cluster that is not busy being restored (a few at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    reporter = reporter or NullReporter()
    clusters = list(Cluster.objects.filter(kind__in=(Cluster.Kind.RKE, Cluster.Kind.K3S)).exclude(
        state__in=(Cluster.State.RESTORING, Cluster.State.UNAVAILABLE, Cluster.State.PROVISIONING)))

    def one(cluster: Cluster) -> tuple[str, dict[str, list[str]] | str]:
        try:
            return cluster.name, reconcile_cluster(cluster)
        except (kube.ClusterError, kube.KubeconfigError) as exc:
            return cluster.name, str(getattr(exc, "reason", exc))
        finally:
            connection.close()

    added, missing, errors = {}, {}, {}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for name, found in pool.map(one, clusters):
            if isinstance(found, str):
                errors[name] = found
                continue
            if found["added"]:
                added[name] = found["added"]
            if found["missing"]:
                missing[name] = found["missing"]
    for name, names in missing.items():
        reporter.log(f"{name}: snapshot records gone from the cluster, now Missing: {', '.join(names)}", "warning")
    return {"reconciled": len(clusters), "added": added, "missing": missing, "unreachable": errors}


@transaction.atomic
def reconcile(cluster: Cluster, records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Corral's snapshots against the cluster's ETCDSnapshotFile records: records Corral did not know are
    added (Discovered); Ready snapshots whose every record is gone are marked Missing."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    uid = ""
    for record in records:
        spec = record.get("spec") or {}
        meta = spec.get("metadata") or {}
        if not meta.get("corral.io/cluster"):
            continue  # RKE2/k3s's own snapshots: not Corral's sets (no version or config)
        uid = uid or meta["corral.io/cluster"]
        by_name.setdefault(spec.get("snapshotName", ""), []).append(record)
    known = {s.name: s for s in cluster.snapshots.filter(kind=Snapshot.Kind.ETCD)}
    added, missing = [], []
    for name, recs in by_name.items():
        if not name or name in known:
            continue
        local = next((r for r in recs if (r.get("spec") or {}).get("nodeName") != "s3"), recs[0])
        fields = fields_from_record(local)
        s3_rec = next((r for r in recs if (r.get("spec") or {}).get("nodeName") == "s3"), None)
        Snapshot.objects.create(cluster=cluster, name=name[:200], trigger=Snapshot.Trigger.DISCOVERED,
                                state=S.READY, s3_location=((s3_rec or {}).get("spec") or {}).get("location", ""),
                                **fields)
        added.append(name)
    for name, snapshot in known.items():
        if snapshot.state == S.READY and name not in by_name:
            Snapshot.objects.filter(pk=snapshot.pk).update(
                state=S.MISSING, reason="its ETCDSnapshotFile records are gone from the cluster")
            missing.append(name)
        elif snapshot.state == S.MISSING and name in by_name:
            Snapshot.objects.filter(pk=snapshot.pk).update(state=S.READY, reason="")
    return {"added": added, "missing": missing}
