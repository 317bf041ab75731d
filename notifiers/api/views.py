"""``/v3/notifiers/``: Slack webhooks and SMTP servers alerts go to; ``POST .../test/`` sends a test message."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from notifiers import services
from notifiers.api.serializers import NotifierSerializer
from notifiers.models import Notifier
from portal.api.errors import conflict
from portal.api.viewsets import PortalModelViewSet


class NotifierViewSet(PortalModelViewSet):
    queryset = Notifier.objects.all()
    serializer_class = NotifierSerializer
    filterset_fields = ["kind", "name"]
    search_fields = ["name", "description"]
    action_permissions = {"test": "change"}

    def extra_create_fields(self) -> dict:
        return {"created_by": self.request.user}

    @extend_schema(request=None, responses=NotifierSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a test message now; 409 with the reason when it cannot be delivered."""
        notifier = self.get_object()
        try:
            services.send_test(notifier, user=request.user)
        except services.NotifyError as exc:
            return conflict(f"The test message was not delivered: {exc}")
        notifier.refresh_from_db()
        return Response(NotifierSerializer(notifier, context=self.get_serializer_context()).data)
