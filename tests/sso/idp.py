"""An in-process SAML identity provider for the tests, shaped like a Shibboleth IdP.

It has its own RSA key and self-signed certificate (made with ``cryptography`` at test time),
publishes metadata, reads Corral's AuthnRequests from the redirect URL, and builds SAML
Responses that it signs with the python ``xmlsec`` bindings — independently of the
python3-saml code under test. Everything travels through Django's test client.
"""
from __future__ import annotations

import base64
import datetime as dt
import uuid
import zlib
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
SHIBMD = "urn:mace:shibboleth:metadata:1.0"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
URI_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"

EPPN = ("urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "eduPersonPrincipalName")
UID = ("urn:oid:0.9.2342.19200300.100.1.1", "uid")
DISPLAY_NAME = ("urn:oid:2.16.840.1.113730.3.1.241", "displayName")
MAIL = ("urn:oid:0.9.2342.19200300.100.1.3", "mail")
IS_MEMBER_OF = ("urn:oid:1.3.6.1.4.1.5923.1.5.1.1", "isMemberOf")


def make_key_and_cert(common_name: str, *, bits: int = 2048, not_before: dt.datetime | None = None,
                      not_after: dt.datetime | None = None) -> tuple[str, str]:
    """``(private key PEM, certificate PEM)``; dates default to valid from an hour ago for a year."""
    now = dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(hours=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def cert_body(cert_pem: str) -> str:
    return "".join(line for line in cert_pem.strip().splitlines() if "-----" not in line)


def saml_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_element(element: etree._Element, key_pem: str, cert_pem: str) -> None:
    """Add an enveloped RSA-SHA256 signature to ``element`` (a Response or Assertion) right after its Issuer."""
    signature = xmlsec.template.create(element, xmlsec.constants.TransformExclC14N,
                                       xmlsec.constants.TransformRsaSha256, ns="ds")
    element.find(f"{{{SAML}}}Issuer").addnext(signature)
    ref = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri=f"#{element.get('ID')}")
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    key = xmlsec.Key.from_memory(key_pem.encode(), xmlsec.constants.KeyDataFormatPem)
    key.load_cert_from_memory(cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem)
    ctx = xmlsec.SignatureContext()
    ctx.key = key
    xmlsec.tree.add_ids(element.getroottree().getroot(), ["ID"])
    ctx.sign(signature)


def sign_document(root: etree._Element, key_pem: str, cert_pem: str) -> None:
    """Enveloped signature over a whole metadata document (first child of the root, URI="")."""
    signature = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N,
                                       xmlsec.constants.TransformRsaSha256, ns="ds")
    root.insert(0, signature)
    ref = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri="")
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(key_pem.encode(), xmlsec.constants.KeyDataFormatPem)
    ctx.sign(signature)


def encrypt_assertion(assertion: etree._Element, sp_cert_pem: str) -> None:
    """Replace ``assertion`` by an EncryptedAssertion for the SP's certificate (AES-128-CBC, RSA-OAEP), as Shibboleth does."""
    wrapper = etree.Element(f"{{{SAML}}}EncryptedAssertion")
    assertion.addprevious(wrapper)
    wrapper.append(assertion)
    data = xmlsec.template.encrypted_data_create(wrapper, xmlsec.constants.TransformAes128Cbc,
                                                 type=xmlsec.constants.TypeEncElement, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(data, ns="ds")
    encrypted_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(encrypted_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(sp_cert_pem.encode(), xmlsec.constants.KeyDataFormatCertPem))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 128, xmlsec.constants.KeyDataTypeSession)
    ctx.encrypt_xml(data, assertion)


@dataclass
class AuthnRequest:
    id: str
    issuer: str
    acs_url: str
    relay_state: str
    query: dict
    raw_query: dict  # still URL-encoded, as the redirect signature covers them
    xml: etree._Element


class TestIdP:
    """One IdP. ``key_pem``/``cert_pem`` sign its responses; ``metadata()`` is what Corral is configured with."""

    __test__ = False  # not a pytest class

    def __init__(self, entity_id: str = "https://idp.example.test/idp/shibboleth", scope: str = "example.test"):
        self.entity_id = entity_id
        self.scope = scope
        self.sso_url = "https://idp.example.test/idp/profile/SAML2/Redirect/SSO"
        self.slo_url = "https://idp.example.test/idp/profile/SAML2/Redirect/SLO"
        self.key_pem, self.cert_pem = make_key_and_cert("idp.example.test")

    # --- metadata -----------------------------------------------------------------------------------------------

    def metadata(self, *, certs: list[str] | None = None, scopes: list[str] | None = None,
                 valid_until: dt.datetime | None = None) -> str:
        nsmap = {"md": MD, "ds": DS, "shibmd": SHIBMD}
        entity = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap=nsmap, entityID=self.entity_id)
        if valid_until:
            entity.set("validUntil", saml_time(valid_until))
        idp = etree.SubElement(entity, f"{{{MD}}}IDPSSODescriptor",
                               protocolSupportEnumeration=f"urn:oasis:names:tc:SAML:1.1:protocol {SAMLP}")
        ext = etree.SubElement(idp, f"{{{MD}}}Extensions")
        for scope in (self.scope,) if scopes is None else scopes:
            etree.SubElement(ext, f"{{{SHIBMD}}}Scope", regexp="false").text = scope
        for cert in certs or [self.cert_pem]:
            kd = etree.SubElement(idp, f"{{{MD}}}KeyDescriptor", use="signing")
            data = etree.SubElement(etree.SubElement(kd, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
            etree.SubElement(data, f"{{{DS}}}X509Certificate").text = cert_body(cert)
        etree.SubElement(idp, f"{{{MD}}}SingleLogoutService",
                         Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect", Location=self.slo_url)
        etree.SubElement(idp, f"{{{MD}}}NameIDFormat").text = TRANSIENT
        for binding in ("HTTP-POST", "HTTP-Redirect"):
            etree.SubElement(idp, f"{{{MD}}}SingleSignOnService",
                             Binding=f"urn:oasis:names:tc:SAML:2.0:bindings:{binding}", Location=self.sso_url)
        return etree.tostring(entity, encoding="unicode")

    # --- the SP's request ---------------------------------------------------------------------------------------

    def read_request(self, redirect_url: str) -> AuthnRequest:
        """Decode the AuthnRequest Corral put in its redirect to our SSO URL (HTTP-Redirect binding)."""
        assert redirect_url.startswith(self.sso_url), redirect_url
        query = {k: v[0] for k, v in parse_qs(urlparse(redirect_url).query).items()}
        raw_query = dict(part.split("=", 1) for part in urlparse(redirect_url).query.split("&") if "=" in part)
        xml = etree.fromstring(zlib.decompress(base64.b64decode(query["SAMLRequest"]), -15))
        return AuthnRequest(
            id=xml.get("ID"),
            issuer=xml.findtext(f"{{{SAML}}}Issuer"),
            acs_url=xml.get("AssertionConsumerServiceURL"),
            relay_state=query.get("RelayState", ""),
            query=query,
            raw_query=raw_query,
            xml=xml,
        )

    # --- responses ----------------------------------------------------------------------------------------------

    def response(
        self,
        *,
        acs_url: str,
        audience: str,
        in_response_to: str | None = None,
        attributes: dict[tuple[str, str], list[str]] | None = None,
        issuer: str | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=5),
        now: dt.datetime | None = None,
        sign: str = "response",
        signer: tuple[str, str] | None = None,
        response_id: str | None = None,
        assertion_id: str | None = None,
        encrypt_for: str | None = None,
    ) -> etree._Element:
        """A Shibboleth-like Response. ``sign`` is "response", "assertion", "both" or "none";
        ``encrypt_for`` (the SP's certificate) encrypts the assertion, as Shibboleth does by default."""
        now = now or dt.datetime.now(dt.UTC)
        issuer = issuer or self.entity_id
        expires = now + lifetime
        response = etree.Element(f"{{{SAMLP}}}Response", nsmap={"saml2p": SAMLP, "saml2": SAML, "xs": XS, "xsi": XSI})
        response.set("ID", response_id or f"_{uuid.uuid4().hex}")
        response.set("Version", "2.0")
        response.set("IssueInstant", saml_time(now))
        response.set("Destination", acs_url)
        if in_response_to:
            response.set("InResponseTo", in_response_to)
        etree.SubElement(response, f"{{{SAML}}}Issuer").text = issuer
        status = etree.SubElement(response, f"{{{SAMLP}}}Status")
        etree.SubElement(status, f"{{{SAMLP}}}StatusCode", Value="urn:oasis:names:tc:SAML:2.0:status:Success")

        assertion = etree.SubElement(response, f"{{{SAML}}}Assertion")
        assertion.set("ID", assertion_id or f"_{uuid.uuid4().hex}")
        assertion.set("Version", "2.0")
        assertion.set("IssueInstant", saml_time(now))
        etree.SubElement(assertion, f"{{{SAML}}}Issuer").text = issuer
        subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
        name_id = etree.SubElement(subject, f"{{{SAML}}}NameID", Format=TRANSIENT, NameQualifier=self.entity_id,
                                   SPNameQualifier=audience)
        name_id.text = f"AAdzZWNyZXQx{uuid.uuid4().hex}"
        confirmation = etree.SubElement(subject, f"{{{SAML}}}SubjectConfirmation",
                                        Method="urn:oasis:names:tc:SAML:2.0:cm:bearer")
        data = etree.SubElement(confirmation, f"{{{SAML}}}SubjectConfirmationData",
                                NotOnOrAfter=saml_time(expires), Recipient=acs_url)
        if in_response_to:
            data.set("InResponseTo", in_response_to)
        conditions = etree.SubElement(assertion, f"{{{SAML}}}Conditions", NotBefore=saml_time(now - dt.timedelta(seconds=30)),
                                      NotOnOrAfter=saml_time(expires))
        etree.SubElement(etree.SubElement(conditions, f"{{{SAML}}}AudienceRestriction"), f"{{{SAML}}}Audience").text = audience
        authn = etree.SubElement(assertion, f"{{{SAML}}}AuthnStatement", AuthnInstant=saml_time(now),
                                 SessionIndex=f"_{uuid.uuid4().hex}")
        context = etree.SubElement(authn, f"{{{SAML}}}AuthnContext")
        etree.SubElement(context, f"{{{SAML}}}AuthnContextClassRef").text = (
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        )
        if attributes:
            statement = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
            for (name, friendly), values in attributes.items():
                attribute = etree.SubElement(statement, f"{{{SAML}}}Attribute", FriendlyName=friendly, Name=name,
                                             NameFormat=URI_FORMAT)
                for value in values:
                    node = etree.SubElement(attribute, f"{{{SAML}}}AttributeValue")
                    node.set(f"{{{XSI}}}type", "xs:string")
                    node.text = value

        key_pem, cert_pem = signer or (self.key_pem, self.cert_pem)
        if sign in ("assertion", "both"):
            sign_element(assertion, key_pem, cert_pem)
        if encrypt_for:
            encrypt_assertion(assertion, encrypt_for)
        if sign in ("response", "both"):
            sign_element(response, key_pem, cert_pem)
        return response


def encode(response: etree._Element | bytes) -> str:
    raw = response if isinstance(response, bytes) else etree.tostring(response)
    return base64.b64encode(raw).decode()


def person(uid: str = "alice", *, groups: list[str] | None = None, name: str = "Alice Liddell",
           mail: str | None = None, scope: str = "example.test") -> dict:
    """Attributes as a Shibboleth IdP releases them."""
    attrs = {
        EPPN: [f"{uid}@{scope}"],
        UID: [uid],
        DISPLAY_NAME: [name],
        MAIL: [mail or f"{uid}@{scope}"],
    }
    if groups is not None:
        attrs[IS_MEMBER_OF] = groups
    return attrs
