"""Turning an :class:`SSOProvider` row into the configuration allauth's SAML provider reads.

allauth looks SAML configuration up as a ``SocialApp`` (``provider="saml"``,
``client_id=<organization slug>``, settings in ``app.settings``). Corral builds that
object in memory from the SSOProvider row each time allauth asks (see
:class:`portal.sso.adapter.SocialAccountAdapter`), so nothing is copied into allauth's
tables and the SP private key is decrypted only for the request that needs it.
"""
from __future__ import annotations

from allauth.socialaccount.models import SocialApp
from django.urls import reverse

from portal.sso.models import SSOProvider, attribute_names

SAML = "saml"


def acs_url(provider: SSOProvider, request) -> str:
    return request.build_absolute_uri(reverse("saml_acs", args=[provider.slug]))


def metadata_url(provider: SSOProvider, request) -> str:
    return request.build_absolute_uri(reverse("saml_metadata", args=[provider.slug]))


def login_url(provider: SSOProvider, request) -> str:
    return request.build_absolute_uri(reverse("saml_login", args=[provider.slug]))


def sp_entity_id(provider: SSOProvider, request) -> str:
    """What allauth uses as Corral's entity id: the configured one, else the SP metadata URL."""
    return provider.sp_entity_id or metadata_url(provider, request)


def app_settings(provider: SSOProvider) -> dict:
    """The ``SocialApp.settings`` dict allauth's ``build_saml_config`` understands."""
    certs = provider.idp_signing_certs or []
    return {
        "idp": {
            "entity_id": provider.idp_entity_id,
            "sso_url": provider.idp_sso_url,
            "slo_url": provider.idp_slo_url or None,
            # allauth passes one IdP certificate to python3-saml; the check action warns when there are more.
            "x509cert": certs[0] if certs else "",
        },
        "sp": {"entity_id": provider.sp_entity_id or None},
        "attribute_mapping": {
            "uid": attribute_names(provider.attr_uid),
            "email": attribute_names(provider.attr_email),
            "first_name": attribute_names(provider.attr_first_name),
            "last_name": attribute_names(provider.attr_last_name),
        },
        "advanced": {
            "strict": True,
            "x509cert": provider.sp_certificate or None,
            "private_key": provider.sp_private_key or None,
            "authn_request_signed": provider.sign_authn_requests,
            "want_assertion_signed": provider.want_assertions_signed,
            "want_message_signed": provider.want_responses_signed,
            "want_assertion_encrypted": provider.want_assertions_encrypted,
            "signature_algorithm": provider.signature_algorithm,
            "digest_algorithm": provider.digest_algorithm,
            "name_id_format": provider.name_id_format or None,
            "reject_idp_initiated_sso": not provider.allow_idp_initiated,
            "reject_deprecated_algorithm": True,
            # Corral checks the user id itself (with a clearer message) instead of demanding attributes or a NameID.
            "want_attribute_statement": False,
            "want_name_id": False,
            # Internal deployments are often reached as http(s)://corral/ — a single-label host name.
            "allow_single_label_domains": True,
        },
        # Never sign a user in to an existing local account because the IdP claims its e-mail address.
        "email_authentication": False,
        "verified_email": False,
    }


def social_app(provider: SSOProvider) -> SocialApp:
    """An unsaved ``SocialApp`` for allauth; ``app.corral_sso`` points back at the row."""
    app = SocialApp(
        provider=SAML,
        provider_id=provider.slug,
        client_id=provider.slug,
        name=provider.name,
        settings=app_settings(provider),
    )
    app.corral_sso = provider
    return app
