"""“Test this configuration”: everything that can be checked without a user signing in, reported in words."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import urlparse

from allauth.socialaccount.providers.saml.utils import build_saml_config
from django.conf import settings
from django.urls import Resolver404, resolve
from django.utils import timezone
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from portal.sso import config, keys, metadata
from portal.sso.models import SSOProvider, attribute_names

EXPIRY_WARNING_DAYS = 30
STALE_METADATA_DAYS = 7


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning" | "ok"
    text: str

    def as_dict(self) -> dict:
        return {"level": self.level, "text": self.text}


class Report(list):
    def error(self, text: str) -> None:
        self.append(Finding("error", text))

    def warning(self, text: str) -> None:
        self.append(Finding("warning", text))

    def ok(self, text: str) -> None:
        self.append(Finding("ok", text))

    @property
    def passed(self) -> bool:
        return not any(f.level == "error" for f in self)


def _check_cert(report: Report, label: str, cert: str, *, days: int = EXPIRY_WARNING_DAYS) -> keys.CertInfo | None:
    try:
        info = keys.cert_info(cert)
    except ValueError as exc:
        report.error(f"{label} is {exc}.")
        return None
    if info.expired:
        report.error(f"{label} {info.subject} expired on {info.not_after:%Y-%m-%d}.")
    elif info.not_yet_valid:
        report.error(f"{label} {info.subject} is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC.")
    elif info.expires_within(days):
        report.warning(f"{label} {info.subject} expires on {info.not_after:%Y-%m-%d}, in less than {days} days.")
    else:
        report.ok(f"{label}: {info.describe()}.")
    if info.key.startswith("RSA") and info.key_bits < 2048:
        report.error(f"{label} has a {info.key_bits}-bit RSA key; at least 2048 bits are needed.")
    return info


def _check_metadata(report: Report, provider: SSOProvider) -> None:
    if not provider.idp_metadata_xml.strip():
        report.error("There is no IdP metadata: enter the metadata URL or paste the XML, then save.")
        return
    if provider.idp_metadata_signing_cert.strip():
        try:
            metadata.verify_signature(provider.idp_metadata_xml, provider.idp_metadata_signing_cert)
            report.ok("The metadata signature is valid for the configured metadata signing certificate.")
        except metadata.MetadataError as exc:
            report.error(str(exc))
    try:
        parsed = metadata.parse_idp_metadata(provider.idp_metadata_xml, provider.idp_entity_id)
    except (metadata.MetadataError, ValueError) as exc:
        report.error(f"The IdP metadata cannot be used: {exc}")
        return
    report.ok(f"The metadata parses and describes the IdP {parsed.entity_id}.")
    if (parsed.sso_url, parsed.signing_certs) != (provider.idp_sso_url, provider.idp_signing_certs):
        report.error("The saved sign-in URL or certificates differ from the metadata: save the provider again to re-read it.")
    if urlparse(parsed.sso_url).scheme != "https":
        report.warning(f"The IdP sign-in URL {parsed.sso_url} is not https.")
    if parsed.valid_until and parsed.valid_until <= timezone.now():
        report.error(f"The metadata expired on {parsed.valid_until:%Y-%m-%d %H:%M} UTC (validUntil): refresh it.")
    elif parsed.valid_until and parsed.valid_until <= timezone.now() + dt.timedelta(days=2):
        report.warning(f"The metadata expires on {parsed.valid_until:%Y-%m-%d %H:%M} UTC (validUntil): refresh it soon.")
    if provider.idp_metadata_url and provider.idp_metadata_fetched_at and (
        provider.idp_metadata_fetched_at < timezone.now() - dt.timedelta(days=STALE_METADATA_DAYS)
    ):
        report.warning(f"The metadata was last fetched on {provider.idp_metadata_fetched_at:%Y-%m-%d}: refresh it.")
    for n, cert in enumerate(parsed.signing_certs, 1):
        _check_cert(report, f"IdP signing certificate {n}", cert)
    if len(parsed.signing_certs) > 1:
        report.warning(
            f"The IdP lists {len(parsed.signing_certs)} signing certificates; Corral verifies responses with the first "
            "one only. During an IdP key rollover, paste metadata with the certificate the IdP signs with now."
        )
    if parsed.wants_signed_requests and not provider.sign_authn_requests:
        report.error("The IdP wants signed authentication requests (WantAuthnRequestsSigned), but signing is off.")
    if provider.enforce_scope and not parsed.scopes and "1.3.6.1.4.1.5923.1.1.1.6" in provider.attr_uid:
        report.warning("The metadata declares no Shibboleth scope, so scoped user ids (eduPersonPrincipalName) cannot be checked.")


def _check_sp(report: Report, provider: SSOProvider, request) -> None:
    needs_key = provider.sign_authn_requests or provider.want_assertions_encrypted
    if not provider.sp_certificate or not provider.sp_private_key:
        (report.error if needs_key else report.warning)(
            "There is no SP key and certificate: run “Generate a new SP key”. Without them Corral cannot sign "
            "requests or read encrypted assertions (Shibboleth encrypts by default)."
        )
    else:
        info = _check_cert(report, "SP certificate", provider.sp_certificate)
        if info is not None:
            try:
                if keys.key_matches_certificate(provider.sp_private_key, provider.sp_certificate):
                    report.ok("The SP private key matches the SP certificate.")
                else:
                    report.error("The SP private key does not belong to the SP certificate.")
            except ValueError as exc:
                report.error(f"The SP private key is {exc}.")

    entity_id = config.sp_entity_id(provider, request)
    acs = config.acs_url(provider, request)
    if not provider.sp_entity_id:
        report.warning(
            f"No SP entity id is set, so Corral uses its metadata URL {entity_id}, which changes with the host name "
            "used to reach Corral. Set it explicitly (for example https://<corral host>/shibboleth)."
        )
    if provider.idp_entity_id and entity_id == provider.idp_entity_id:
        report.error("The SP entity id equals the IdP entity id; they must differ.")
    if urlparse(acs).scheme != "https" and not settings.DEBUG:
        report.warning(
            f"The assertion consumer service URL is {acs} (not https). Behind a TLS proxy, set SECURE_PROXY_SSL_HEADER "
            "so Corral knows requests arrive over https; otherwise the IdP's Destination will not match."
        )
    try:
        match = resolve(urlparse(acs).path)
        if match.url_name != "saml_acs" or match.kwargs.get("organization_slug") != provider.slug:
            raise Resolver404
    except Resolver404:
        report.error(f"The ACS URL {acs} does not reach Corral's SAML endpoint.")

    try:
        saml_config = build_saml_config(request, config.app_settings(provider), provider.slug)
        saml_settings = OneLogin_Saml2_Settings(saml_config, sp_validation_only=not provider.has_metadata)
        sp_metadata = saml_settings.get_sp_metadata()
        problems = saml_settings.validate_metadata(sp_metadata)
    except Exception as exc:  # noqa: BLE001 - python3-saml reports settings errors as generic exceptions
        report.error(f"python3-saml rejects this configuration: {exc}")
        return
    if problems:
        report.error(f"Corral's SP metadata is not valid: {', '.join(problems)}.")
        return
    text = sp_metadata.decode() if isinstance(sp_metadata, bytes) else sp_metadata
    if f'entityID="{entity_id}"' not in text or f'Location="{acs}"' not in text:
        report.error("Corral's SP metadata does not carry the expected entity id and ACS URL.")
    else:
        report.ok(f"SP metadata is served at {config.metadata_url(provider, request)} with entity id {entity_id} "
                  f"and ACS URL {acs}; register it at the IdP.")


def _check_attributes(report: Report, provider: SSOProvider) -> None:
    if not attribute_names(provider.attr_uid) and not provider.uid_from_nameid:
        report.error("No user id attribute is configured, so nobody could sign in.")
    if not attribute_names(provider.attr_groups):
        report.warning("No group attribute is configured: every sign-in will remove the user's groups from this provider.")


def check_provider(provider: SSOProvider, request) -> Report:
    """All checks for one provider; ``request`` supplies the host name the SP URLs are built with."""
    report = Report()
    _check_metadata(report, provider)
    _check_sp(report, provider, request)
    _check_attributes(report, provider)
    if not provider.enabled:
        report.warning(f"{provider.name} is disabled: users cannot sign in with it until it is enabled.")
    return report
