from clusters.api.views import ClusterViewSet, ProjectViewSet


def register(router) -> None:
    router.register("clusters", ClusterViewSet, basename="cluster")
    router.register("projects", ProjectViewSet, basename="project")
