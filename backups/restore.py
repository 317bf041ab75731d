"""What the restore job runs (README.md, "Restore"): verify, reset etcd, rejoin, version, config, report.

Nothing changes on the cluster until the snapshot has been verified where it will be restored from:
its record in Corral (Ready, this cluster's identity, size and SHA-256 known), then the image's
``verify`` on the restore node, which fetches the archive and checks it against the manifest.
"""
from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from backups.etcd import EtcdNodes, Step, StepFailed
from backups.models import Restore, Snapshot
from backups.snapshots import api_for, read_archive, s3_settings
from clusters import kube
from clusters.models import Cluster, Upgrade
from clusters.nodeops import ClusterApi
from clusters.nodeops.plans import job_failure
from clusters.nodeops.suc import ControllerMissing
from portal.jobs import JobFailed, JobPaused, NullReporter, Reporter

R = Restore.State
MARKER = "/api/v1/namespaces/kube-system/configmaps/corral-restore"
VOLATILE = {"events", "events.events.k8s.io", "leases.coordination.k8s.io", "endpoints",
            "endpointslices.discovery.k8s.io"}
# Objects controllers make from others (compared through their owners) and Corral's own snapshot machinery.
DERIVED = {"pods", "replicasets.apps", "controllerrevisions.apps", "jobs.batch"}
OWN_PREFIXES = ("corral-snap-", "corral-verify-", "corral-restore", "corral-rejoin-", "corral-prune-",
                "apply-corral-")
RESET_TIMEOUT = 900.0


class RestoreRefused(Exception):
    """The snapshot did not pass verification: nothing on the cluster was changed."""



def run(restore: Restore, reporter: Reporter | None = None) -> dict[str, Any]:
    reporter = reporter or NullReporter()
    restore = Restore.objects.select_related("cluster", "snapshot", "snapshot__target").get(pk=restore.pk)
    cluster, snapshot = restore.cluster, restore.snapshot
    steps: list[str] = []
    Restore.objects.filter(pk=restore.pk).update(state=R.RUNNING, reason="")
    Cluster.objects.filter(pk=cluster.pk).update(state=Cluster.State.RESTORING,
                                                 state_reason=f"Restoring {restore.snapshot_name}")
    changed = False
    try:
        if snapshot is None:
            raise RestoreRefused(f"snapshot {restore.snapshot_name} no longer exists")
        if snapshot.kind == Snapshot.Kind.RESOURCES:
            report = _restore_resources(restore, snapshot, reporter, steps)
            changed = True
        else:
            report, changed = _restore_etcd(restore, snapshot, reporter, steps)
    except RestoreRefused as exc:
        _finish(restore, R.FAILED, f"refused, the cluster was not changed: {exc}", {"steps": steps},
                cluster_reason=f"Restore of {restore.snapshot_name} refused: {exc}")
        raise JobFailed(f"refused, the cluster was not changed: {exc}") from None
    except (StepFailed, ControllerMissing, kube.ClusterError, kube.KubeconfigError, JobFailed) as exc:
        reason = str(getattr(exc, "reason", exc))
        words = reason if changed else f"{reason} (nothing was restored)"
        _finish(restore, R.FAILED, words, {"steps": steps},
                cluster_reason=f"Restore of {restore.snapshot_name} failed: {words}")
        raise JobFailed(words) from None
    except Exception as exc:
        _finish(restore, R.FAILED, f"unexpected error: {exc.__class__.__name__}: {exc}", {"steps": steps},
                cluster_reason=f"Restore of {restore.snapshot_name} failed")
        raise
    _finish(restore, R.SUCCEEDED, "", report)
    return {"restore": restore.pk, **{k: report[k] for k in ("difference", "steps") if k in report}}


def _finish(restore: Restore, state: str, reason: str, report: dict[str, Any], cluster_reason: str = "") -> None:
    from clusters import inventory

    try:
        inventory.sync_clusters([restore.cluster_id])
    except Exception:  # noqa: BLE001 - the periodic sync catches up
        pass
    with transaction.atomic():
        Restore.objects.filter(pk=restore.pk).update(state=state, reason=reason[:4000], report=report,
                                                     finished_at=timezone.now())
        Cluster.objects.filter(pk=restore.cluster_id).update(state=Cluster.State.ACTIVE, state_reason=cluster_reason)


# ---------------------------------------------------------------------- etcd snapshots
def _restore_etcd(restore: Restore, snapshot: Snapshot, reporter: Reporter, steps: list[str]):
    cluster = restore.cluster
    api = api_for(cluster)
    changed = False
    try:
        nodes = EtcdNodes(cluster, api, log=reporter.log, checkpoint=reporter.checkpoint)
        # 1. Refuse before anything changes.
        reporter.progress(2, "checking the snapshot")
        uid = nodes.identity()
        if snapshot.cluster_uid and snapshot.cluster_uid != uid:
            raise RestoreRefused(f"snapshot {snapshot.name} was taken of another cluster (identity "
                                 f"{snapshot.cluster_uid}, this cluster is {uid})")
        etcd = nodes.etcd_nodes()
        if not etcd:
            raise RestoreRefused(f"{cluster.name} has no Ready etcd node")
        names = [n["metadata"]["name"] for n in etcd]
        if snapshot.s3_location:
            restore_node = snapshot.node if snapshot.node in names else names[0]
        elif snapshot.node in names:
            restore_node = snapshot.node
        else:
            raise RestoreRefused(f"snapshot {snapshot.name} is on the disk of {snapshot.node or 'an unknown node'}, "
                                 f"which is not a Ready etcd node of {cluster.name} now, and has no copy in a bucket")
        check = ["--snapshot", snapshot.name, "--expect-cluster", uid, "--sha256", snapshot.sha256]
        secret = s3_settings(snapshot) if snapshot.s3_location else {}
        reporter.progress(5, f"verifying {snapshot.name} on {restore_node}")
        try:
            jobs = nodes.run(Step(f"corral-verify-{restore.pk}", ["verify", *check], [restore_node], secret),
                             keep=True)
            manifest = nodes.last_json_line(jobs[restore_node])
        except StepFailed as exc:
            raise RestoreRefused(str(exc)) from None
        finally:
            nodes.cleanup(Step(f"corral-verify-{restore.pk}", ["verify"], [], {}))
        if manifest.get("sha256") != snapshot.sha256 or manifest.get("cluster") != uid:
            raise RestoreRefused(f"the manifest on {restore_node} does not match Corral's record of {snapshot.name}")
        steps.append(f"verified {snapshot.name} on {restore_node} (sha256 {snapshot.sha256[:12]}…)")
        reporter.log(steps[-1])

        # 2. Reset etcd from the snapshot on the restore node.
        reporter.progress(15, f"restoring etcd on {restore_node}")
        marker = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "corral-restore", "namespace": "kube-system",
                               "labels": {"app.kubernetes.io/managed-by": "corral"}},
                  "data": {"restore": str(restore.pk), "snapshot": snapshot.name}}
        api.put(MARKER.rsplit("/", 1)[0], marker)
        reset = Step(f"corral-restore-{restore.pk}", ["cluster-reset", *check], [restore_node], secret)
        nodes.start(reset)
        changed = True  # from here on the cluster may be changed
        _wait_reset(nodes, api, reset, restore, reporter)
        steps.append(f"etcd on {restore_node} reset from {snapshot.name}")
        reporter.log(steps[-1])

        # 3. Other etcd members rejoin the restored one; leftovers the old etcd brought back go.
        others = [n for n in _wait_etcd_ready(nodes, names) if n != restore_node]
        if others:
            reporter.progress(40, f"{', '.join(others)} rejoin")
            nodes.run(Step(f"corral-rejoin-{restore.pk}", ["rejoin"], others, {}))
            steps.append(f"{', '.join(others)} rejoined")
            reporter.log(steps[-1])
        stale = nodes.stale_plans(keep=set())
        if stale:
            reporter.log(f"Deleted Plans the restored etcd brought back: {', '.join(stale)}")
        nodes.cleanup(reset)
        _record_again(nodes, cluster, reporter)
    finally:
        api.close()

    # 4. The Kubernetes version, through the upgrade path (a downgrade is allowed here only).
    if restore.parts in (Restore.Parts.KUBERNETES, Restore.Parts.ALL):
        reporter.progress(55, f"Kubernetes version {snapshot.kubernetes_version}")
        _node_run(restore, reporter, steps, version=snapshot.kubernetes_version)
        if restore.parts == Restore.Parts.KUBERNETES:
            _config_version_only(restore, snapshot, reporter, steps)
    # 5. The config: a new version with the snapshot's document; kubelet arguments roll out.
    if restore.parts == Restore.Parts.ALL:
        reporter.progress(75, "cluster config")
        _restore_config(restore, snapshot, reporter, steps)
    # 6. What differs now from what the snapshot held.
    reporter.progress(95, "comparing the cluster with the snapshot")
    report = {"steps": steps, **_compare(restore.cluster, manifest.get("inventory") or [])}
    reporter.log(_difference_words(report["difference"]))
    return report, changed



def _wait_reset(nodes: EtcdNodes, api: ClusterApi, step: Step, restore: Restore, reporter: Reporter) -> None:
    """The reset is through when the API answers and the marker written just before is gone (the restored
    etcd predates it); a Failed Job while the marker is still there means nothing was restored."""
    deadline = time.monotonic() + RESET_TIMEOUT
    unreachable = ""
    while True:
        reporter.checkpoint()
        try:
            marker = api.exists(MARKER)
            if marker is None or (marker.get("data") or {}).get("restore") != str(restore.pk):
                return
            jobs = nodes.ops.jobs(step.plan)
            for node, job in jobs.items():
                reason = job_failure(job)
                if reason:
                    nodes.cleanup(step)
                    api.request("DELETE", MARKER)
                    raise RestoreRefused(f"cluster-reset on {node}: {nodes.failure_words(job, reason)}")
            unreachable = ""
        except kube.ClusterError as exc:
            if exc.status not in (None, 500, 502, 503, 504) and not exc.unreachable:
                raise
            if not unreachable:
                unreachable = exc.reason
                reporter.log(f"API server not answering while etcd is reset ({exc.reason}); waiting")
        if time.monotonic() > deadline:
            raise StepFailed(f"the reset did not finish within {int(RESET_TIMEOUT)} s"
                             + (f" (API server: {unreachable})" if unreachable else ""))
        time.sleep(0.25)


def _wait_etcd_ready(nodes: EtcdNodes, names: list[str], timeout: float = 300) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        ready = [n["metadata"]["name"] for n in nodes.etcd_nodes()]
        if set(names) <= set(ready) or time.monotonic() > deadline:
            return ready
        time.sleep(0.25)


def _record_again(nodes: EtcdNodes, cluster: Cluster, reporter: Reporter) -> None:
    """ETCDSnapshotFile records made after the snapshot are not in the restored etcd: write them again."""
    present = {(r.get("metadata") or {}).get("name") for r in nodes.snapshot_files()}
    again = []
    for snap in cluster.snapshots.filter(kind=Snapshot.Kind.ETCD, state=Snapshot.State.READY):
        spec = (snap.manifest or {}).get("spec")
        if not spec:
            continue
        for prefix, location in (("local", snap.location), ("s3", snap.s3_location)):
            name = f"{prefix}-{snap.name}"
            if not location or name in present:
                continue
            body_spec = dict(spec, location=location, nodeName=snap.node if prefix == "local" else "s3")
            nodes.put_snapshot_file({
                "apiVersion": "k3s.cattle.io/v1", "kind": "ETCDSnapshotFile",
                "metadata": {"name": name, "labels": {"etcd.k3s.cattle.io/snapshot-storage-node": body_spec["nodeName"],
                                                      "corral.io/snapshot": snap.name}},
                "spec": body_spec,
                "status": {"size": str(snap.size or 0), "readyToUse": True,
                           "creationTime": (snap.taken_at or snap.created_at).strftime("%Y-%m-%dT%H:%M:%SZ")}})
            again.append(name)
    if again:
        reporter.log(f"Recorded again {len(again)} ETCDSnapshotFile object(s) made after the snapshot")


def _node_run(restore: Restore, reporter: Reporter, steps: list[str], *, version: str | None = None,
              kubelet_args: dict | None = None) -> None:
    """Run an upgrade-path rollout inside this job (its Upgrade row points at the restore's job)."""
    from clusters.upgrades import restore_rollout
    from clusters.upgrades.runners import engine_for

    cluster = Cluster.objects.get(pk=restore.cluster_id)
    if version:
        running = _settled_versions(cluster, reporter)
        if running and set(running.values()) == {version}:
            steps.append(f"every node already runs {version}")
            reporter.log(steps[-1])
            return
        reporter.log("Node versions now: " + ", ".join(f"{n} {v}" for n, v in sorted(running.items())))
    upgrade = restore_rollout(cluster, version=version, kubelet_args=kubelet_args, job_id=restore.job_id,
                              note=f"restore of {restore.snapshot_name}")
    try:
        engine_for(upgrade, reporter=reporter, job_id=restore.job_id).run()
    except JobPaused as exc:
        Upgrade.objects.filter(pk=upgrade.pk).update(state=Upgrade.State.FAILED, reason=str(exc),
                                                     finished_at=timezone.now())
        raise StepFailed(f"{upgrade} stopped: {exc}") from None
    finally:
        Cluster.objects.filter(pk=cluster.pk).update(state=Cluster.State.RESTORING,
                                                     state_reason=f"Restoring {restore.snapshot_name}")
    steps.append(f"{upgrade} done")
    reporter.log(steps[-1])


def _settled_versions(cluster: Cluster, reporter: Reporter, timeout: float = 180) -> dict[str, str]:
    """Kubelet versions once every node has posted status since the reset (a restored Node object shows
    what the kubelet said at snapshot time until its next heartbeat)."""
    since = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    api = api_for(cluster)
    deadline = time.monotonic() + timeout
    try:
        while True:
            reporter.checkpoint()
            nodes = api.nodes()
            fresh = {}
            for name, node in nodes.items():
                ready = next((c for c in (node.get("status") or {}).get("conditions") or []
                              if c.get("type") == "Ready"), {})
                if (ready.get("lastHeartbeatTime") or "") >= since:
                    fresh[name] = ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
            if len(fresh) == len(nodes) or time.monotonic() > deadline:
                return fresh
            time.sleep(0.5)
    finally:
        api.close()


def _config_version_only(restore: Restore, snapshot: Snapshot, reporter: Reporter, steps: list[str]) -> None:
    """The config in force names the version the cluster now runs again (nothing else in it changes)."""
    from clusters import config

    cluster = Cluster.objects.get(pk=restore.cluster_id)
    document = dict(config.current_document(cluster))
    if document.get("kubernetes_version") == snapshot.kubernetes_version:
        return
    document["kubernetes_version"] = snapshot.kubernetes_version
    version = config.save_config(cluster, document, user=restore.created_by,
                                 comment=f"Kubernetes version from snapshot {snapshot.name}")
    steps.append(f"config version {version.version}: kubernetes_version {snapshot.kubernetes_version}")
    reporter.log(steps[-1])


def _restore_config(restore: Restore, snapshot: Snapshot, reporter: Reporter, steps: list[str]) -> None:
    from clusters import config

    cluster = Cluster.objects.get(pk=restore.cluster_id)
    before = config.current_document(cluster)
    document = dict(snapshot.config_document)
    document["kubernetes_version"] = cluster.kubernetes_version or document.get("kubernetes_version")
    version = config.save_config(cluster, document, user=restore.created_by,
                                 comment=f"restored from snapshot {snapshot.name}")
    steps.append(f"config version {version.version} from snapshot {snapshot.name}")
    reporter.log(steps[-1])
    args_before = config._kubelet_args(before)
    args_after = config._kubelet_args(version.document)
    if args_after != args_before:
        _node_run(restore, reporter, steps, kubelet_args=args_after)


def _compare(cluster: Cluster, inventory: list) -> dict[str, Any]:
    from backups import resources

    api = api_for(cluster)
    try:
        now = resources.inventory(api)
    finally:
        api.close()
    ignore = VOLATILE | set(resources.VOLATILE) | DERIVED
    expected = [tuple(i) for i in inventory if isinstance(i, (list, tuple)) and len(i) == 3 and _compared(i)
                and i[0] not in ignore]
    actual = [tuple(i) for i in now if _compared(i) and i[0] not in ignore]
    diff = resources.diff(expected, actual, ignore=ignore)
    # Both counts are of what was compared (volatile and derived objects, and Corral's own machinery, left out).
    return {"difference": diff, "objects_in_snapshot": len(expected), "objects_now": len(actual)}


def _compared(item) -> bool:
    """Objects a restore is judged on: not Corral's own snapshot machinery, which the restored etcd
    holds as it was while the snapshot was being saved (its Plan, Job, Secret, the records)."""
    resource, _namespace, name = item
    return not (str(name).startswith(OWN_PREFIXES) or resource == "etcdsnapshotfiles.k3s.cattle.io")


def _difference_words(diff: dict[str, list]) -> str:
    missing, extra = diff.get("missing") or [], diff.get("extra") or []
    if not missing and not extra:
        return "The cluster's objects match the snapshot's (events, leases and endpoints left out)"
    head = lambda items: ", ".join("/".join(p for p in i if p) for i in items[:5]) + (" …" if len(items) > 5 else "")  # noqa: E731
    return (f"Differences from the snapshot: {len(missing)} missing ({head(missing)}), "
            f"{len(extra)} not in the snapshot ({head(extra)})")


# ---------------------------------------------------------------------- resource backups
def _restore_resources(restore: Restore, snapshot: Snapshot, reporter: Reporter, steps: list[str]) -> dict[str, Any]:
    from backups import resources

    reporter.progress(5, f"fetching {snapshot.name}")
    try:
        archive = read_archive(snapshot)
    except Exception as exc:  # noqa: BLE001 - a missing archive is a refusal
        raise RestoreRefused(str(exc)) from None
    uid = ""
    api = api_for(restore.cluster)
    try:
        try:
            uid = resources.cluster_identity(api)
            resources.verify(archive, snapshot.manifest or None, expect_cluster=uid)
        except resources.BackupError as exc:
            raise RestoreRefused(str(exc)) from None
        steps.append(f"verified {snapshot.name} (sha256 {snapshot.sha256[:12]}…)")
        reporter.progress(20, "applying the backup's objects")
        try:
            report = resources.restore(api, archive, expect_cluster=uid, manifest=snapshot.manifest or None,
                                       progress=lambda pct, msg: reporter.progress(20 + int(pct * 0.7), msg))
        except resources.RestoreInterrupted as exc:
            done = exc.report or {}
            raise StepFailed(f"{exc.reason}; applied before it stopped: {len(done.get('created') or [])} created, "
                             f"{len(done.get('updated') or [])} updated") from None
        except resources.BackupError as exc:
            raise RestoreRefused(str(exc)) from None
    finally:
        api.close()
    steps.append("objects applied")
    report = dict(report)
    report["steps"] = steps
    report.setdefault("difference", {})
    reporter.log(_difference_words(report["difference"]))
    return report

