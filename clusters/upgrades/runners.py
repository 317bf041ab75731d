"""RQ entry points for upgrades: thin runners over the engines."""
from __future__ import annotations

from clusters import kube
from clusters.models import Upgrade
from portal import jobs
from portal.jobs.control import JobStateError


def engine_for(upgrade: Upgrade, reporter=None, job_id=None):
    """k3s version upgrades use the server/agent Plans; everything else walks Corral's batches."""
    from clusters.upgrades.k3s import K3sEngine
    from clusters.upgrades.rke import RkeEngine

    k3s = upgrade.cluster.kind == "k3s" and upgrade.kind == Upgrade.Kind.KUBERNETES
    return (K3sEngine if k3s else RkeEngine)(upgrade, reporter, job_id)


class UpgradeRunner(jobs.JobRunner):
    """Upgrades a cluster's Kubernetes node by node; paused or killed, it continues from the stored node states."""

    kind = "clusters.upgrade"
    queue = "clusters"
    resumable = True
    timeout = 24 * 3600
    description = "Upgrade a cluster's Kubernetes"

    def run(self) -> dict:
        upgrade = Upgrade.objects.select_related("cluster").filter(pk=self.params.get("upgrade_id")).first()
        if upgrade is None:
            raise jobs.JobFailed("the upgrade this job was for no longer exists")
        return engine_for(upgrade, reporter=self, job_id=self.job.pk).run()

    # Cancel and resume from the job pages go through the upgrade, so it and its nodes follow.
    @classmethod
    def _upgrade(cls, job):
        upgrade = Upgrade.objects.filter(pk=(job.params or {}).get("upgrade_id")).first()
        if upgrade is None:
            raise JobStateError("the upgrade this job was for no longer exists")
        return upgrade

    @classmethod
    def request_cancel(cls, job, user=None):
        from clusters.upgrades import UpgradeError, cancel_upgrade

        try:
            cancel_upgrade(cls._upgrade(job), user=user)
        except UpgradeError as exc:
            raise JobStateError(str(exc)) from None
        job.refresh_from_db()
        return job

    @classmethod
    def request_resume(cls, job, user=None):
        from clusters.upgrades import UpgradeError, resume_upgrade

        try:
            return resume_upgrade(cls._upgrade(job), user=user)
        except UpgradeError as exc:
            raise JobStateError(str(exc)) from None

    @classmethod
    def on_lost(cls, job, reason: str) -> None:
        """The reaper found the worker dead: the upgrade is paused and its nodes given back (see lost.py)."""
        from clusters.upgrades.lost import hand_back

        upgrade_id = (job.params or {}).get("upgrade_id")
        if not Upgrade.objects.filter(pk=upgrade_id, state=Upgrade.State.RUNNING).update(
                state=Upgrade.State.PAUSED, reason=reason):
            return
        upgrade = Upgrade.objects.select_related("cluster").filter(pk=upgrade_id).first()
        if upgrade is not None:
            hand_back(upgrade, job.pk)


class KubeletArgsRunner(UpgradeRunner):
    """Rolls new kubelet arguments to a cluster's nodes, with the batches, drains and node walk of an upgrade."""

    kind = "clusters.kubelet_args"
    description = "Roll kubelet arguments to a cluster's nodes"


class ReleaseRunner(jobs.JobRunner):
    """After an upgrade is cancelled while no worker runs it: uncordon what it held and delete its Plans."""

    kind = "clusters.upgrade_release"
    queue = "clusters"
    description = "Release the nodes of a cancelled upgrade"

    def run(self) -> dict:
        from clusters.nodeops import ClusterApi, NodeOps

        upgrade = Upgrade.objects.select_related("cluster").get(pk=self.params["upgrade_id"])
        engine = engine_for(upgrade, reporter=self, job_id=self.job.pk)
        engine.rows = list(upgrade.nodes.order_by("batch", "node_name"))
        engine.api = ClusterApi(upgrade.cluster.kubeconfig, insecure_tls=upgrade.cluster.insecure_tls)
        engine.ops = NodeOps(engine.api, log=engine.rec.log)
        try:
            engine.release()
        except (kube.ClusterError, kube.KubeconfigError) as exc:
            raise jobs.JobFailed(f"could not release the nodes: {getattr(exc, 'reason', exc)}") from None
        finally:
            engine.rec.flush()
            engine.api.close()
        engine.refresh_inventory()
        held = [r.node_name for r in engine.rows if r.state not in ("pending", "active")]
        self.log(f"Released the nodes of the cancelled {upgrade}")
        return {"upgrade": upgrade.pk, "nodes_not_upgraded": held}


RUNNERS = (UpgradeRunner, KubeletArgsRunner, ReleaseRunner)
