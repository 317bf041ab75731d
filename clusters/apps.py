from django.apps import AppConfig


class ClustersConfig(AppConfig):
    name = "clusters"

    def ready(self) -> None:
        from django.conf import settings

        from clusters import jobs as cluster_jobs
        from clusters.models import Cluster, ClusterConfigVersion, Node, NodeUpgrade, Project, Upgrade
        from portal import jobs
        from rbac import access

        access.register(Cluster, access.Rule("cluster", cluster_path="pk"))
        access.register(Project, access.Rule("project", cluster_path="cluster", project_path="pk"))
        # Nodes, config versions and upgrades are seen by whoever sees their cluster.
        access.register(Node, access.Rule("node", cluster_path="cluster"))
        access.register(ClusterConfigVersion, access.Rule("cluster", cluster_path="cluster"))
        access.register(Upgrade, access.Rule("cluster", cluster_path="cluster"))
        access.register(NodeUpgrade, access.Rule("cluster", cluster_path="upgrade__cluster"))

        jobs.register(cluster_jobs.SyncRunner, cluster_jobs.SyncFleetRunner)
        from clusters.upgrades.runners import RUNNERS as upgrade_runners
        jobs.register(*upgrade_runners)
        jobs.periodic(cluster_jobs.SyncFleetRunner.kind, every=settings.CLUSTER_SYNC_INTERVAL)
