"""Reading IdP metadata: picking the IdP, Shibboleth scopes, signed federation metadata, errors in words."""
from __future__ import annotations

import pytest
from lxml import etree

from portal.sso import metadata
from tests.sso.idp import TestIdP, make_key_and_cert, sign_document


def aggregate(*idps: TestIdP) -> str:
    return ('<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" ID="agg">'
            + "".join(i.metadata() for i in idps) + "</md:EntitiesDescriptor>")


def test_parse_shibboleth_metadata(idp):
    parsed = metadata.parse_idp_metadata(idp.metadata())
    assert parsed.entity_id == idp.entity_id
    assert parsed.sso_url == idp.sso_url and parsed.slo_url == idp.slo_url
    assert parsed.scopes == [{"value": "example.test", "regexp": False}]
    assert len(parsed.signing_certs) == 1


def test_entity_is_chosen_from_an_aggregate(idp):
    other = TestIdP(entity_id="https://idp.other.test/idp/shibboleth'", scope="other.test")
    xml = aggregate(idp, other)
    assert metadata.parse_idp_metadata(xml, other.entity_id).scopes[0]["value"] == "other.test"
    with pytest.raises(metadata.MetadataError, match="describes 2 identity providers"):
        metadata.parse_idp_metadata(xml)
    with pytest.raises(metadata.MetadataError, match="has no identity provider with entity id https://x.test"):
        metadata.parse_idp_metadata(xml, "https://x.test")


def test_metadata_without_redirect_sso_is_explained(idp):
    xml = idp.metadata().replace("bindings:HTTP-Redirect\" Location=\"https://idp.example.test/idp/profile/SAML2/Redirect/SSO",
                                 "bindings:HTTP-Artifact\" Location=\"https://idp.example.test/idp/profile/SAML2/Redirect/SSO")
    with pytest.raises(metadata.MetadataError, match="no SingleSignOnService with the HTTP-Redirect binding"):
        metadata.parse_idp_metadata(xml)


def test_entities_with_dtd_are_not_parsed():
    evil = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    with pytest.raises(metadata.MetadataError):
        metadata.parse_idp_metadata(evil)


def test_signed_federation_metadata_is_verified(idp):
    fed_key, fed_cert = make_key_and_cert("federation.example.test")
    root = etree.fromstring(aggregate(idp).encode())
    sign_document(root, fed_key, fed_cert)
    signed = etree.tostring(root).decode()
    metadata.verify_signature(signed, fed_cert)

    with pytest.raises(metadata.MetadataError, match="not valid for the configured signing certificate"):
        metadata.verify_signature(signed.replace(idp.sso_url, "https://evil.example.test/sso"), fed_cert)
    with pytest.raises(metadata.MetadataError, match="not valid for the configured signing certificate"):
        metadata.verify_signature(signed, make_key_and_cert("someone-else")[1])
    with pytest.raises(metadata.MetadataError, match="is not signed"):
        metadata.verify_signature(aggregate(idp), fed_cert)
