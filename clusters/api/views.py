from clusters import services
from clusters.api.serializers import ClusterSerializer, ProjectSerializer
from clusters.models import Cluster, Project
from portal.api.viewsets import PortalModelViewSet
from rbac import access


class ClusterViewSet(PortalModelViewSet):
    queryset = Cluster.objects.all()
    serializer_class = ClusterSerializer
    filterset_fields = ["kind", "state", "name"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "state", "kubernetes_version", "created_at"]

    def perform_create(self, serializer):
        from rest_framework.exceptions import PermissionDenied

        if not access.can_create(self.request.user, Cluster):
            raise PermissionDenied("You may not add clusters.")
        serializer.instance = services.create_cluster(user=self.request.user, **serializer.validated_data)


class ProjectViewSet(PortalModelViewSet):
    queryset = Project.objects.select_related("cluster")
    serializer_class = ProjectSerializer
    filterset_fields = ["cluster", "name"]
    search_fields = ["name", "description"]
