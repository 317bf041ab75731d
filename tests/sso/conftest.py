"""Fixtures for the SSO tests: an in-process IdP, a configured SSO provider, and a browser that signs in through both."""
from __future__ import annotations

import pytest
from lxml import etree

from portal.sso import services
from portal.sso.models import SSOProvider
from tests.sso.idp import AuthnRequest, TestIdP, encode, make_key_and_cert

SP_ENTITY_ID = "https://corral.example.test/shibboleth"
SLUG = "uni"


@pytest.fixture(scope="session")
def idp() -> TestIdP:
    return TestIdP()


@pytest.fixture(scope="session")
def sp_keypair() -> tuple[str, str]:
    """(key, cert) for Corral's SP side, made once: RSA key generation is the slow part of these tests."""
    return make_key_and_cert("Corral SP uni")


@pytest.fixture
def make_provider(db, idp, sp_keypair):
    def make(slug: str = SLUG, *, metadata: str | None = None, **fields) -> SSOProvider:
        key, cert = sp_keypair
        values = {"name": "Example University", "enabled": True, "sp_entity_id": SP_ENTITY_ID,
                  "sp_certificate": cert, "sp_private_key": key, **fields}
        provider = SSOProvider(slug=slug, idp_metadata_xml=idp.metadata() if metadata is None else metadata, **values)
        services.apply_metadata(provider)
        provider.save()
        return provider

    return make


@pytest.fixture
def provider(make_provider) -> SSOProvider:
    return make_provider()


class SAMLBrowser:
    """Drives Django's test client through an SP-initiated SAML sign-in with the test IdP."""

    def __init__(self, client, provider: SSOProvider, idp: TestIdP):
        self.client, self.provider, self.idp = client, provider, idp
        client.defaults.setdefault("HTTP_HOST", "testserver")  # browsers send Host; allauth's SAML views need it

    @property
    def acs_path(self) -> str:
        return f"/accounts/saml/{self.provider.slug}/acs/"

    def start(self) -> AuthnRequest:
        response = self.client.post(f"/accounts/saml/{self.provider.slug}/login/")
        assert response.status_code == 302, response.content.decode()[:500]
        return self.idp.read_request(response["Location"])

    def post(self, saml_response: etree._Element | bytes, relay_state: str = ""):
        """POST to the ACS as the IdP's auto-submitting form would, then follow allauth's hop to "finish"."""
        posted = self.client.post(self.acs_path, {"SAMLResponse": encode(saml_response), "RelayState": relay_state})
        assert posted.status_code == 302 and posted["Location"].endswith("/acs/finish/"), posted
        return self.client.get(posted["Location"])

    def response_for(self, request: AuthnRequest, attributes: dict, **kwargs) -> etree._Element:
        kwargs.setdefault("audience", SP_ENTITY_ID)
        return self.idp.response(acs_url=request.acs_url, in_response_to=request.id, attributes=attributes, **kwargs)

    def login(self, attributes: dict, **kwargs):
        request = self.start()
        return self.post(self.response_for(request, attributes, **kwargs), request.relay_state)


@pytest.fixture
def browser(client, provider, idp) -> SAMLBrowser:
    return SAMLBrowser(client, provider, idp)


@pytest.fixture
def make_browser(provider, idp):
    from django.test import Client

    def make(for_provider: SSOProvider | None = None) -> SAMLBrowser:
        return SAMLBrowser(Client(), for_provider or provider, idp)

    return make
