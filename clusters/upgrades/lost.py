"""When a run's worker dies: give back what it held without waiting for anyone to resume.

The reaper (in the scheduler process, which needs no worker) calls ``hand_back`` through
``UpgradeRunner.on_lost``. It must not block, so it only does what is safe at once:

* nodes the run cordoned but had not handed to SUC yet (Cordoned, Draining, Drained; or Upgrading
  with no Plan behind it) are Ready: they are uncordoned now and go back to Pending;
* nodes already Upgraded, or Upgrading and already done with their Plan, are uncordoned now;
* nodes SUC is still changing keep their Plan (killing an upgrade half way is worse), and the
  Plan is switched to ``cordon: true``, so system-upgrade-controller itself uncordons each node as
  soon as its Job completes — no node stays cordoned longer than its own replacement. A Plan whose
  nodes include one that was cordoned before the run is left as it is (SUC would uncordon it too);
  a resumed run or a cancel releases those.

The cluster shows the upgrade as paused. A resumed run writes its Plans again (``cordon: false``)
and continues from the rows.
"""
from __future__ import annotations

import logging

from clusters import kube
from clusters.models import Cluster, Upgrade
from clusters.nodeops import ClusterApi, NodeOps
from clusters.nodeops.plans import PLAN_LABEL, is_ready, node_labels
from clusters.upgrades.records import HOLDING, Recorder, S
from clusters.upgrades.rke import plan_name, run_selector

logger = logging.getLogger("corral.clusters")


def hand_back(upgrade: Upgrade, job_id=None) -> None:
    """Release the nodes of a run whose worker died (see the module docstring); never raises."""
    rows = list(upgrade.nodes.order_by("batch", "node_name"))
    rec = Recorder(upgrade, job_id)
    title = f"Upgrade to {upgrade.to_version}" if upgrade.kind == Upgrade.Kind.KUBERNETES else "Kubelet arguments rollout"
    Cluster.objects.filter(pk=upgrade.cluster_id).update(
        state=Cluster.State.UPGRADE_PAUSED, state_reason=f"{title} paused: {upgrade.reason or 'its worker was lost'}")
    rolling = upgrade.mode != "parallel"
    held = [r for r in rows if r.state not in (S.PENDING, S.ACTIVE)]
    if not held or upgrade.cluster.kind != Cluster.Kind.RKE and upgrade.kind == Upgrade.Kind.KUBERNETES:
        if held:  # k3s version upgrades: SUC cordons and uncordons itself; its Plans set cordon/drain
            rec.log("Worker lost: system-upgrade-controller finishes the nodes it is upgrading and uncordons them")
        rec.flush()
        return
    try:
        api = ClusterApi(upgrade.cluster.kubeconfig, insecure_tls=upgrade.cluster.insecure_tls)
    except kube.KubeconfigError as exc:
        rec.log(f"Worker lost; could not release the nodes: {exc}", "error")
        rec.flush()
        return
    ops = NodeOps(api, log=rec.log)
    try:
        live = api.nodes()
        plans = {p["metadata"]["name"]: p for p in ops.plans(run_selector(upgrade))}
        in_flight: dict[str, list] = {}
        for row in held:
            node = live.get(row.node_name)
            plan = plan_name(upgrade, row.batch)
            mine = rolling and not row.cordoned_before
            if node is None:
                continue
            if row.state in HOLDING or (row.state == S.UPGRADING and plan not in plans):
                if mine:
                    api.uncordon(row.node_name)
                rec.move(row, S.PENDING, "uncordoned: the worker was lost before this node was changed")
            elif row.state == S.UPGRADED or (row.state == S.UPGRADING and PLAN_LABEL + plan in node_labels(node)
                                             and is_ready(node)):
                if mine:
                    api.uncordon(row.node_name)
                    rec.log(f"{row.role} node {row.node_name}: uncordoned (done; the worker was lost)")
            elif row.state == S.UPGRADING:
                in_flight.setdefault(plan, []).append(row)
            elif row.state == S.FAILED and mine:
                api.uncordon(row.node_name)
                rec.log(f"{row.role} node {row.node_name}: uncordoned (its change failed; the worker was lost)")
        for plan, members in in_flight.items():
            names = ", ".join(r.node_name for r in members)
            if not rolling:
                continue
            if any(r.cordoned_before for r in members):
                rec.log(f"Plan {plan} keeps running on {names}; they stay cordoned until the run is resumed or "
                        "cancelled (one of them was cordoned before the run)", "warning")
                continue
            ops.patch_plan(plan, {"spec": {"cordon": True}})
            rec.log(f"Worker lost while {names} were being changed: Plan {plan} now asks system-upgrade-controller "
                    "to uncordon each of them as soon as its job completes")
    except kube.ClusterError as exc:
        rec.log(f"Worker lost; could not release the nodes: {exc.reason}", "error")
    except Exception:  # noqa: BLE001 - the reaper must go on
        logger.exception("releasing the nodes of lost upgrade %s failed", upgrade.pk)
    finally:
        rec.flush()
        api.close()
