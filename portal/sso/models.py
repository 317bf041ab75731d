"""SSO configuration stored in the database: identity providers, the global login switch, used message ids.

The models belong to the ``portal`` app (``portal/models.py`` imports this module) so their
migrations live in ``portal/migrations``.
"""
from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from portal.crypto import EncryptedTextField

# Attribute names as Shibboleth releases them (SAML2 "urn:oid" names); FriendlyNames match too.
EPPN = "urn:oid:1.3.6.1.4.1.5923.1.1.1.6"
UID = "urn:oid:0.9.2342.19200300.100.1.1"
DISPLAY_NAME = "urn:oid:2.16.840.1.113730.3.1.241"
GIVEN_NAME = "urn:oid:2.5.4.42"
SURNAME = "urn:oid:2.5.4.4"
MAIL = "urn:oid:0.9.2342.19200300.100.1.3"
IS_MEMBER_OF = "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"

RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"

ATTRIBUTE_LIST_HELP = "Attribute names (urn:oid:… or FriendlyName), separated by commas; the first one present is used."

# Slugs must not collide with allauth's provider ids, or allauth would look the account up by the wrong name.
RESERVED_SLUGS = {"saml", "openid_connect", "google", "github", "microsoft", "okta", "keycloak"}


def attribute_names(value: str) -> list[str]:
    """``"a, b\\nc"`` → ``["a", "b", "c"]``."""
    return [part.strip() for part in re.split(r"[,\n]", value or "") if part.strip()]


def validate_slug_not_reserved(value: str) -> None:
    if value.lower() in RESERVED_SLUGS:
        raise ValidationError(f"“{value}” is reserved by the login library; choose another short name.")


def validate_attribute_list(value: str) -> None:
    for name in attribute_names(value):
        if len(name) > 255 or any(ch.isspace() for ch in name):
            raise ValidationError(f"“{name[:60]}” is not an attribute name.")


class SSOProvider(models.Model):
    """One SAML identity provider (a Shibboleth IdP, ADFS, Keycloak, ...) and how Corral talks to it.

    Users sign in at ``/accounts/saml/<slug>/login/``; the IdP posts back to
    ``/accounts/saml/<slug>/acs/``; the SP metadata to register at the IdP is served at
    ``/accounts/saml/<slug>/metadata/``.
    """

    class SignatureAlgorithm(models.TextChoices):
        RSA_SHA256 = RSA_SHA256, "RSA-SHA256"
        RSA_SHA512 = RSA_SHA512, "RSA-SHA512"

    class DigestAlgorithm(models.TextChoices):
        SHA256 = SHA256, "SHA-256"
        SHA512 = SHA512, "SHA-512"

    name = models.CharField(max_length=100, help_text="Shown on the login button, e.g. “University login”")
    slug = models.SlugField(
        max_length=64, unique=True, validators=[validate_slug_not_reserved],
        help_text="Short name used in the SSO URLs and as the provider of this IdP's groups. Cannot change later.",
    )
    enabled = models.BooleanField(default=False, help_text="Users can sign in with this provider")

    # Identity provider
    idp_metadata_url = models.URLField(
        "IdP metadata URL", max_length=500, blank=True,
        help_text="Fetched when saved and by the “Refresh metadata” action. Leave blank to paste the XML instead.",
    )
    idp_metadata_xml = models.TextField(
        "IdP metadata XML", blank=True,
        help_text="The IdP's SAML metadata (for Shibboleth: https://<idp>/idp/shibboleth). Filled in from the URL if one is given.",
    )
    idp_metadata_signing_cert = models.TextField(
        "Metadata signing certificate", blank=True,
        help_text="Optional PEM certificate of the federation or IdP that signs the metadata; when set, "
                  "metadata without a valid signature by it is refused.",
    )
    idp_entity_id = models.CharField(
        "IdP entity id", max_length=500, blank=True,
        help_text="Which IdP in the metadata to trust, e.g. https://idp.example.org/idp/shibboleth. "
                  "May be left blank when the metadata describes exactly one IdP.",
    )
    idp_sso_url = models.CharField("IdP sign-in URL", max_length=500, blank=True, editable=False)
    idp_slo_url = models.CharField("IdP logout URL", max_length=500, blank=True, editable=False)
    idp_signing_certs = models.JSONField("IdP signing certificates", default=list, blank=True, editable=False)
    idp_scopes = models.JSONField(
        "IdP scopes", default=list, blank=True, editable=False,
        help_text="Shibboleth scopes from the metadata: [{value, regexp}]",
    )
    idp_wants_signed_requests = models.BooleanField(default=False, editable=False)
    idp_metadata_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    idp_metadata_fetched_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Service provider (Corral)
    sp_entity_id = models.CharField(
        "SP entity id", max_length=500, blank=True,
        help_text="Corral's entity id at this IdP, e.g. https://corral.example.org/shibboleth. "
                  "Blank: the SP metadata URL (which then depends on the host name used to reach Corral).",
    )
    sp_certificate = models.TextField(
        "SP certificate", blank=True,
        help_text="PEM. Generated with the key when the provider is created, or by the “Generate a new SP key” action.",
    )
    sp_private_key = EncryptedTextField("SP private key", blank=True, help_text="PEM, stored encrypted")

    # Attribute map
    attr_uid = models.CharField(
        "User id attributes", max_length=500, default=f"{EPPN}, {UID}", validators=[validate_attribute_list],
        help_text="eduPersonPrincipalName, then uid. " + ATTRIBUTE_LIST_HELP,
    )
    uid_from_nameid = models.BooleanField(
        "Fall back to a persistent NameID", default=False,
        help_text="When no user id attribute is released, use the NameID if it is persistent (never a transient one).",
    )
    attr_display_name = models.CharField(
        "Display name attributes", max_length=500, default=DISPLAY_NAME, blank=True,
        validators=[validate_attribute_list], help_text=ATTRIBUTE_LIST_HELP,
    )
    attr_first_name = models.CharField(
        "Given name attributes", max_length=500, default=GIVEN_NAME, blank=True, validators=[validate_attribute_list],
        help_text=ATTRIBUTE_LIST_HELP,
    )
    attr_last_name = models.CharField(
        "Surname attributes", max_length=500, default=SURNAME, blank=True, validators=[validate_attribute_list],
        help_text=ATTRIBUTE_LIST_HELP,
    )
    attr_email = models.CharField(
        "E-mail attributes", max_length=500, default=MAIL, blank=True, validators=[validate_attribute_list],
        help_text=ATTRIBUTE_LIST_HELP,
    )
    attr_groups = models.CharField(
        "Group attributes", max_length=500, default=f"{IS_MEMBER_OF}, isMemberOf, memberOf", blank=True,
        validators=[validate_attribute_list],
        help_text="isMemberOf, memberOf, or any attribute listing groups; values of all of them are used. "
                  "At every login these groups replace the user's groups from this provider.",
    )
    enforce_scope = models.BooleanField(
        "Check scopes", default=True,
        help_text="A scoped user id (user@scope) must carry a scope the IdP's metadata declares (shibmd:Scope), "
                  "so one IdP cannot assert another's users.",
    )

    # Security
    sign_authn_requests = models.BooleanField("Sign authentication requests", default=True)
    want_assertions_signed = models.BooleanField(
        "Require signed assertions", default=False,
        help_text="A signature on the response or on the assertion is always required; this demands one on the assertion.",
    )
    want_responses_signed = models.BooleanField("Require signed responses", default=False)
    want_assertions_encrypted = models.BooleanField(
        "Require encrypted assertions", default=False,
        help_text="Encrypted assertions are always accepted (Shibboleth encrypts by default); this refuses plain ones.",
    )
    signature_algorithm = models.CharField(
        max_length=100, choices=SignatureAlgorithm.choices, default=SignatureAlgorithm.RSA_SHA256
    )
    digest_algorithm = models.CharField(max_length=100, choices=DigestAlgorithm.choices, default=DigestAlgorithm.SHA256)
    name_id_format = models.CharField(
        "NameID format", max_length=200, blank=True,
        help_text="Blank lets the IdP choose (Shibboleth sends a transient one).",
    )
    allow_idp_initiated = models.BooleanField(
        "Allow IdP-initiated login", default=False,
        help_text="Accept unsolicited responses (started at the IdP). They cannot be tied to a login this browser started.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "portal"
        ordering = ["name"]
        verbose_name = "SSO provider"
        verbose_name_plural = "SSO providers"

    def __str__(self) -> str:
        return self.name

    @property
    def has_metadata(self) -> bool:
        return bool(self.idp_entity_id and self.idp_sso_url and self.idp_signing_certs)

    def login_unavailable_reason(self) -> str:
        """Why nobody can sign in with this provider right now, or ``""``."""
        if not self.enabled:
            return f"Sign-in with {self.name} is turned off in Corral's SSO settings."
        if not self.has_metadata:
            return (
                f"{self.name} is not fully configured: Corral has no valid metadata (entity id, sign-in URL "
                "and signing certificate) for its identity provider yet."
            )
        return ""


class SSOSettings(models.Model):
    """Global SSO switches; one row (``SSOSettings.load()``).

    Break-glass when local login is off and SSO is broken: a superuser may still sign in
    with a password while the web server runs with ``CORRAL_LOCAL_LOGIN_BREAK_GLASS=1``,
    or an operator runs ``manage.py local_login on`` on the server. Both are audited.
    """

    local_login_enabled = models.BooleanField(
        "Local password login", default=True,
        help_text="When off, username/password sign-in is refused everywhere and users sign in with SSO.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "portal"
        verbose_name = "SSO settings"
        verbose_name_plural = "SSO settings"

    def __str__(self) -> str:
        return "SSO settings"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> SSOSettings:
        return cls.objects.get_or_create(pk=1)[0]


class SAMLMessageID(models.Model):
    """A Response or Assertion id already used to sign in, kept until it would have expired anyway."""

    provider = models.ForeignKey(SSOProvider, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(
        max_length=255, validators=[RegexValidator(r"^\S+$")], help_text="The Response or Assertion ID attribute"
    )
    kind = models.CharField(max_length=16)
    used_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "portal"
        constraints = [
            models.UniqueConstraint(fields=["provider", "message_id"], name="portal_samlmessageid_once")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.message_id}"
