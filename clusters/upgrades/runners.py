"""RQ entry points for upgrades: thin runners over the engines."""
from __future__ import annotations

from clusters import kube
from clusters.models import Upgrade
from portal import jobs
from portal.jobs.control import JobStateError


def engine_for(upgrade: Upgrade, reporter=None, job_id=None):
    from clusters.upgrades.k3s import K3sEngine
    from clusters.upgrades.rke import RkeEngine

    engine = K3sEngine if upgrade.cluster.kind == "k3s" else RkeEngine
    return engine(upgrade, reporter, job_id)


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
        Upgrade.objects.filter(pk=(job.params or {}).get("upgrade_id"), state=Upgrade.State.RUNNING).update(
            state=Upgrade.State.PAUSED, reason=reason)


class ReleaseRunner(jobs.JobRunner):
    """After an upgrade is cancelled while no worker runs it: uncordon what it held and delete its Plans."""

    kind = "clusters.upgrade_release"
    queue = "clusters"
    description = "Release the nodes of a cancelled upgrade"

    def run(self) -> dict:
        from clusters.upgrades.nodes import ClusterApi

        upgrade = Upgrade.objects.select_related("cluster").get(pk=self.params["upgrade_id"])
        engine = engine_for(upgrade, reporter=self, job_id=self.job.pk)
        engine.rows = list(upgrade.nodes.order_by("batch", "node_name"))
        engine.api = ClusterApi(upgrade.cluster.kubeconfig, insecure_tls=upgrade.cluster.insecure_tls)
        try:
            engine.release()
        except (kube.ClusterError, kube.KubeconfigError) as exc:
            raise jobs.JobFailed(f"could not release the nodes: {getattr(exc, 'reason', exc)}") from None
        finally:
            engine.rec.flush()
            engine.api.close()
        engine.refresh_inventory()
        held = [r.node_name for r in engine.rows if r.state not in ("pending", "active")]
        self.log(f"Released the nodes of the cancelled upgrade to {upgrade.to_version}")
        return {"upgrade": upgrade.pk, "nodes_not_upgraded": held}


RUNNERS = (UpgradeRunner, ReleaseRunner)
