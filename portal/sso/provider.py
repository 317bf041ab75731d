"""allauth's SAML provider with Corral's rules, installed through allauth's ``provider_class`` setting.

allauth validates the response (signature, issuer, audience, times, destination) with
python3-saml; this class then refuses what python3-saml does not check — responses already
used, disabled providers, missing user ids, foreign scopes — before anything is written,
and reads the attribute map from the :class:`SSOProvider` row.
"""
from __future__ import annotations

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.providers.saml.provider import SAMLProvider
from django.core.exceptions import PermissionDenied

from portal.sso.assertion import read_assertion
from portal.sso.errors import SAMLRefused
from portal.sso.inbound import ACCEPTED_FLAG
from portal.sso.models import SAMLMessageID, SSOProvider


class CorralSAMLProvider(SAMLProvider):
    # allauth mounts a provider's URLs (and finds its templates) by package: keep allauth's SAML ones.
    package = "allauth.socialaccount.providers.saml"

    @property
    def sso(self) -> SSOProvider:
        provider = getattr(self.app, "corral_sso", None)
        if provider is None:
            provider = SSOProvider.objects.get(slug=self.app.client_id)
            self.app.corral_sso = provider
        return provider

    def redirect(self, request, process, next_url=None, data=None, **kwargs):
        reason = self.sso.login_unavailable_reason()
        if reason:
            from portal.sso.views import render_refusal

            raise ImmediateHttpResponse(render_refusal(request, SAMLRefused("unavailable", reason, self.sso)))
        return super().redirect(request, process, next_url=next_url, data=data, **kwargs)

    def sociallogin_from_response(self, request, response):
        """Called by allauth right after python3-saml accepted ``response`` (the ``OneLogin_Saml2_Auth``)."""
        setattr(request, ACCEPTED_FLAG, True)  # errors from here on are not the response's (see views.finish_acs)
        sso = self.sso
        reason = sso.login_unavailable_reason()
        if reason:
            raise SAMLRefused("unavailable", reason, sso)
        assertion = read_assertion(sso, response)
        used = SAMLMessageID.objects.filter(provider=sso, message_id__in=[assertion.response_id, assertion.assertion_id])
        if used.exists():
            raise SAMLRefused(
                "replayed",
                "This response was already used to sign in once (same Response or Assertion ID): "
                "a SAML response is good for one sign-in only. Start a new sign-in from Corral's login page.",
                sso,
            )
        self._corral_assertion = assertion
        login = super().sociallogin_from_response(request, response)
        login.corral_assertion = assertion
        return login

    def extract_uid(self, data):
        return self._corral_assertion.uid

    def extract_common_fields(self, data):
        a = self._corral_assertion
        return {"email": a.email, "first_name": a.first_name, "last_name": a.last_name}

    def unstash_redirect_state(self, request, state_id):
        try:
            return super().unstash_redirect_state(request, state_id)
        except PermissionDenied:
            raise SAMLRefused(
                "unknown_request",
                "This response answers a sign-in that this browser did not start, or one already completed "
                "(its InResponseTo matches no pending request). Start a new sign-in from Corral's login page.",
                self.sso,
            ) from None
