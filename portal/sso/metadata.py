"""Reading IdP metadata: fetch, verify its signature, and pick out what Corral needs, with errors in words.

Parsing uses python3-saml's hardened XML parser (no DTDs, no entities, no network) and
selects the entity in Python, so an entity id is never pasted into an XPath expression.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import requests
import xmlsec
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from portal.sso import keys

NS = {
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "shibmd": "urn:mace:shibboleth:metadata:1.0",
}
SAML2_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"
REDIRECT_BINDING = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
MAX_METADATA_BYTES = 20 * 1024 * 1024
FETCH_TIMEOUT = 20


class MetadataError(Exception):
    """The metadata cannot be used; the message says why in words."""


@dataclass
class IdPMetadata:
    entity_id: str
    sso_url: str
    slo_url: str = ""
    signing_certs: list[str] = field(default_factory=list)
    scopes: list[dict] = field(default_factory=list)
    wants_signed_requests: bool = False
    valid_until: dt.datetime | None = None


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MetadataError(f"validUntil “{value}” is not a date and time.") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _root(xml: str):
    if not xml or not xml.strip():
        raise MetadataError("The IdP metadata is empty.")
    try:
        return OneLogin_Saml2_XML.to_etree(xml.strip().encode())
    except Exception as exc:  # noqa: BLE001 - lxml and the hardened parser raise several types
        raise MetadataError(f"The IdP metadata is not well-formed XML: {exc}") from None


def idp_entity_ids(xml: str) -> list[str]:
    root = _root(xml)
    return [e.get("entityID", "") for e in root.xpath("//md:EntityDescriptor[md:IDPSSODescriptor]", namespaces=NS)]


def parse_idp_metadata(xml: str, entity_id: str = "") -> IdPMetadata:
    """The IdP ``entity_id`` (or the only IdP) from ``xml``; raises :class:`MetadataError`."""
    root = _root(xml)
    if root.tag not in (f"{{{NS['md']}}}EntityDescriptor", f"{{{NS['md']}}}EntitiesDescriptor"):
        raise MetadataError("This is not SAML metadata: the document must start with EntityDescriptor or EntitiesDescriptor.")
    entities = root.xpath("//md:EntityDescriptor[md:IDPSSODescriptor]", namespaces=NS)
    if not entities:
        raise MetadataError("The metadata describes no identity provider (no IDPSSODescriptor).")
    if entity_id:
        chosen = [e for e in entities if e.get("entityID") == entity_id]
        if not chosen:
            found = ", ".join(e.get("entityID", "?") for e in entities[:5])
            more = f" and {len(entities) - 5} more" if len(entities) > 5 else ""
            raise MetadataError(f"The metadata has no identity provider with entity id {entity_id}; it has {found}{more}.")
        entity = chosen[0]
    elif len(entities) == 1:
        entity = entities[0]
    else:
        raise MetadataError(
            f"The metadata describes {len(entities)} identity providers; enter the entity id of the one to trust."
        )

    descriptors = [
        d for d in entity.xpath("md:IDPSSODescriptor", namespaces=NS)
        if SAML2_PROTOCOL in (d.get("protocolSupportEnumeration") or "").split()
    ]
    if not descriptors:
        raise MetadataError(f"{entity.get('entityID')} does not support SAML 2.0 (only older protocols are listed).")
    idp = descriptors[0]

    sso = [s.get("Location", "") for s in idp.xpath("md:SingleSignOnService", namespaces=NS)
           if s.get("Binding") == REDIRECT_BINDING]
    if not sso or not sso[0]:
        raise MetadataError(
            f"{entity.get('entityID')} has no SingleSignOnService with the HTTP-Redirect binding, which Corral uses to send users to it."
        )
    slo = [s.get("Location", "") for s in idp.xpath("md:SingleLogoutService", namespaces=NS)
           if s.get("Binding") == REDIRECT_BINDING]

    certs: list[str] = []
    for descriptor in idp.xpath("md:KeyDescriptor", namespaces=NS):
        if descriptor.get("use") == "encryption":
            continue
        for node in descriptor.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS):
            body = "".join((node.text or "").split())
            if body and body not in certs:
                keys.load_certificate(body)  # raises ValueError on garbage
                certs.append(body)
    if not certs:
        raise MetadataError(f"{entity.get('entityID')} lists no signing certificate, so its responses could not be verified.")

    scopes = []
    for node in idp.xpath("md:Extensions/shibmd:Scope", namespaces=NS) + entity.xpath(
        "md:Extensions/shibmd:Scope", namespaces=NS
    ):
        value = (node.text or "").strip()
        if value:
            scopes.append({"value": value, "regexp": (node.get("regexp") or "false").strip().lower() in ("true", "1")})

    valid_until = [t for t in (_parse_time(n.get("validUntil")) for n in [entity, *entity.iterancestors()]) if t]
    return IdPMetadata(
        entity_id=entity.get("entityID", ""),
        sso_url=sso[0],
        slo_url=slo[0] if slo else "",
        signing_certs=certs,
        scopes=scopes,
        wants_signed_requests=(idp.get("WantAuthnRequestsSigned") or "").lower() in ("true", "1"),
        valid_until=min(valid_until) if valid_until else None,
    )


def verify_signature(xml: str, cert_pem: str) -> None:
    """Require a valid enveloped signature over the whole document by ``cert_pem``; raise MetadataError if not."""
    root = _root(xml)
    signatures = root.xpath("ds:Signature", namespaces=NS)
    if len(signatures) != 1:
        raise MetadataError("The metadata is not signed, but a metadata signing certificate is configured.")
    signature = signatures[0]
    references = signature.xpath("ds:SignedInfo/ds:Reference", namespaces=NS)
    root_id = root.get("ID")
    if len(references) != 1 or references[0].get("URI") not in ("", f"#{root_id}" if root_id else ""):
        raise MetadataError("The metadata signature does not cover the whole document.")
    try:
        key = xmlsec.Key.from_memory(keys.to_pem(cert_pem).encode(), xmlsec.constants.KeyDataFormatCertPem)
    except (xmlsec.Error, ValueError):
        raise MetadataError("The metadata signing certificate is not a valid PEM certificate.") from None
    if root_id:
        xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    try:
        ctx.verify(signature)
    except xmlsec.Error:
        raise MetadataError(
            "The metadata signature is not valid for the configured signing certificate: "
            "the metadata was changed or signed with another key."
        ) from None


def fetch(url: str) -> str:
    """Download metadata over HTTP(S); raises :class:`MetadataError` with the reason."""
    try:
        response = requests.get(url, timeout=FETCH_TIMEOUT, stream=True,
                                headers={"Accept": "application/samlmetadata+xml, application/xml, text/xml"})
    except requests.RequestException as exc:
        raise MetadataError(f"Could not fetch the metadata from {url}: {exc.__class__.__name__}: {exc}") from None
    with response:
        if response.status_code != 200:
            raise MetadataError(f"Fetching the metadata from {url} answered HTTP {response.status_code}.")
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_METADATA_BYTES:
                raise MetadataError(
                    f"The metadata at {url} is larger than {MAX_METADATA_BYTES // (1024 * 1024)} MB; "
                    "use the federation's per-entity (MDQ) URL for this IdP instead of the whole aggregate."
                )
            chunks.append(chunk)
    body = b"".join(chunks)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError(f"The metadata at {url} is not UTF-8 text.") from None
