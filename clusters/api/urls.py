from clusters.api.upgrades import UpgradeViewSet
from clusters.api.views import ClusterViewSet, NodeViewSet, ProjectViewSet


def register(router) -> None:
    router.register("clusters", ClusterViewSet, basename="cluster")
    router.register("nodes", NodeViewSet, basename="node")
    router.register("projects", ProjectViewSet, basename="project")
    router.register("upgrades", UpgradeViewSet, basename="upgrade")
