from django.apps import AppConfig


class ClustersConfig(AppConfig):
    name = "clusters"

    def ready(self) -> None:
        from clusters.models import Cluster, Project
        from rbac import access

        access.register(Cluster, access.Rule("cluster", cluster_path="pk"))
        access.register(Project, access.Rule("project", cluster_path="cluster", project_path="pk"))
