"""Bearer tokens for scripts and CI; browsers use the session."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from portal.models import ApiToken


class TokenAuthentication(authentication.BaseAuthentication):
    """Accepts ``Authorization: Bearer corral_…`` (or ``Token corral_…``)."""

    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        token = ApiToken.find(header[1])
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or expired API token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("This user is disabled.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="corral"'
