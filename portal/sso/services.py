"""SSO writes: every function does its writes and their audit rows in one transaction.

Called by the SAML login flow, the admin and the API.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import audit
from portal.sso import keys, metadata
from portal.sso.assertion import Assertion
from portal.sso.errors import SAMLRefused
from portal.sso.models import SAMLMessageID, SSOProvider, SSOSettings
from rbac.models import Group

# How long a used id is remembered after the response's own NotOnOrAfter (python3-saml allows this much clock drift).
REPLAY_MARGIN = dt.timedelta(minutes=10)
USERNAME_MAX = 150


@dataclass
class GroupChange:
    added: list[str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def describe(self) -> str:
        parts = []
        if self.added:
            parts.append("added " + ", ".join(self.added))
        if self.removed:
            parts.append("removed " + ", ".join(self.removed))
        return "; ".join(parts) or "no change"


# --- SAML login ---------------------------------------------------------------------------------------------------


def _burn_ids(assertion: Assertion) -> None:
    """Remember the Response and Assertion ids; a second use of either is a replay."""
    expires = assertion.not_on_or_after + REPLAY_MARGIN
    rows = [
        SAMLMessageID(provider=assertion.provider, message_id=assertion.response_id, kind="response", expires_at=expires),
    ]
    if assertion.assertion_id != assertion.response_id:
        rows.append(SAMLMessageID(provider=assertion.provider, message_id=assertion.assertion_id, kind="assertion",
                                  expires_at=expires))
    try:
        with transaction.atomic():
            SAMLMessageID.objects.bulk_create(rows)
    except IntegrityError:
        raise SAMLRefused(
            "replayed",
            "This response was already used to sign in once (same Response or Assertion ID): "
            "a SAML response is good for one sign-in only. Start a new sign-in from Corral's login page.",
            assertion.provider,
        ) from None
    SAMLMessageID.objects.filter(expires_at__lt=timezone.now() - REPLAY_MARGIN).delete()


def _free_username(uid: str) -> str:
    User = get_user_model()
    base = re.sub(r"[^\w.@+-]", "_", uid)[:USERNAME_MAX] or "user"
    candidate, n = base, 1
    while User._default_manager.filter(username=candidate).exists():
        n += 1
        suffix = f"-{n}"
        candidate = base[: USERNAME_MAX - len(suffix)] + suffix
    return candidate


def _sync_groups(user, provider: SSOProvider, wanted_names: list[str]) -> GroupChange:
    """Make the user's groups of this provider exactly ``wanted_names``; local and other providers' groups stay."""
    existing = {g.name: g for g in Group.objects.filter(provider=provider.slug, name__in=wanted_names)}
    for name in wanted_names:
        if name not in existing:
            existing[name], _ = Group.objects.get_or_create(
                name=name, provider=provider.slug, defaults={"description": f"From {provider.name}"}
            )
    current = {g.name: g for g in user.corral_groups.filter(provider=provider.slug)}
    added = [existing[n] for n in wanted_names if n not in current]
    removed = [g for n, g in sorted(current.items()) if n not in wanted_names]
    if removed:
        user.corral_groups.remove(*removed)
    if added:
        user.corral_groups.add(*added)
    return GroupChange(added=sorted(g.name for g in added), removed=sorted(g.name for g in removed))


def sync_saml_login(assertion: Assertion, *, source_ip: str | None = None):
    """Create or update the user of a validated assertion and replace their IdP groups; returns ``(user, account, change)``.

    The assertion's ids are burned first, so a replay (even a concurrent one) is refused.
    The IdP identity is the SocialAccount ``(provider slug, uid)``: it is never matched to a
    local account by user name or e-mail, so an IdP cannot take over a local administrator.
    """
    provider = assertion.provider
    User = get_user_model()
    with transaction.atomic():
        _burn_ids(assertion)
        account = (
            SocialAccount.objects.select_for_update().select_related("user")
            .filter(provider=provider.slug, uid=assertion.uid).first()
        )
        if account is not None:
            user = account.user
            if not user.is_active:
                raise SAMLRefused(
                    "inactive", f"The Corral account {user.get_username()} is disabled; ask a Corral administrator.", provider
                )
            before = {f: getattr(user, f) for f in ("email", "first_name", "last_name")}
            for name in before:
                value = getattr(assertion, name)
                if value:
                    setattr(user, name, value)
            changes = {f: [before[f], getattr(user, f)] for f in before if before[f] != getattr(user, f)}
            if changes:
                user.save(update_fields=list(changes))
                audit.record("update", user, user=user, source_ip=source_ip, changes=changes,
                             message=f"updated from {provider.name} at SAML sign-in")
        else:
            user = User(username=_free_username(assertion.uid), email=assertion.email,
                        first_name=assertion.first_name, last_name=assertion.last_name)
            user.set_unusable_password()
            user.save()
            account = SocialAccount.objects.create(user=user, provider=provider.slug, uid=assertion.uid)
            audit.record(
                "create", user, user=user, source_ip=source_ip,
                changes={f: [None, getattr(user, f)] for f in ("username", "email", "first_name", "last_name")},
                message=f"created at first SAML sign-in via {provider.name} for {assertion.uid}",
            )
        account.extra_data = {"attributes": assertion.attributes, "name_id": assertion.name_id}
        account.save(update_fields=["extra_data"])

        before_groups = sorted(user.corral_groups.filter(provider=provider.slug).values_list("name", flat=True))
        change = _sync_groups(user, provider, assertion.groups)
        if change or assertion.skipped_groups:
            message = f"IdP groups from {provider.name} at SAML sign-in: {change.describe()}"
            if assertion.skipped_groups:
                message += f"; ignored over-long group names: {', '.join(assertion.skipped_groups)}"
            audit.record(
                "role_change", user, user=user, source_ip=source_ip, message=message,
                changes={"groups": [before_groups, sorted(assertion.groups)]},
            )
    return user, account, change


# --- configuration --------------------------------------------------------------------------------------------------


def apply_metadata(provider: SSOProvider, *, fetch: bool = False) -> None:
    """Fetch (when asked and a URL is set), verify and parse the IdP metadata into the provider's derived fields.

    Raises ``ValidationError`` keyed by the field to correct. Does not save.
    """
    if fetch and provider.idp_metadata_url:
        try:
            provider.idp_metadata_xml = metadata.fetch(provider.idp_metadata_url)
        except metadata.MetadataError as exc:
            raise ValidationError({"idp_metadata_url": str(exc)}) from None
        provider.idp_metadata_fetched_at = timezone.now()
    if not provider.idp_metadata_xml.strip():
        for name in ("idp_sso_url", "idp_slo_url"):
            setattr(provider, name, "")
        provider.idp_signing_certs, provider.idp_scopes, provider.idp_metadata_valid_until = [], [], None
        provider.idp_wants_signed_requests = False
        return
    if provider.idp_metadata_signing_cert.strip():
        try:
            keys.load_certificate(provider.idp_metadata_signing_cert)
        except ValueError as exc:
            raise ValidationError({"idp_metadata_signing_cert": f"This is {exc}."}) from None
        try:
            metadata.verify_signature(provider.idp_metadata_xml, provider.idp_metadata_signing_cert)
        except metadata.MetadataError as exc:
            raise ValidationError({"idp_metadata_xml": str(exc)}) from None
    try:
        parsed = metadata.parse_idp_metadata(provider.idp_metadata_xml, provider.idp_entity_id.strip())
    except metadata.MetadataError as exc:
        field = "idp_entity_id" if "entity id" in str(exc) else "idp_metadata_xml"
        raise ValidationError({field: str(exc)}) from None
    except ValueError as exc:
        raise ValidationError({"idp_metadata_xml": f"A certificate in the metadata is {exc}."}) from None
    provider.idp_entity_id = parsed.entity_id
    provider.idp_sso_url = parsed.sso_url
    provider.idp_slo_url = parsed.slo_url
    provider.idp_signing_certs = parsed.signing_certs
    provider.idp_scopes = parsed.scopes
    provider.idp_wants_signed_requests = parsed.wants_signed_requests
    provider.idp_metadata_valid_until = parsed.valid_until


def ensure_sp_key(provider: SSOProvider) -> bool:
    """Give a provider without an SP key pair a new one (does not save); True when one was made."""
    if provider.sp_private_key and provider.sp_certificate:
        return False
    cert, key = keys.generate_sp_keypair(f"Corral SP {provider.slug}")
    provider.sp_certificate, provider.sp_private_key = cert, key
    return True


def refresh_metadata(provider: SSOProvider, *, user=None) -> SSOProvider:
    """Fetch the IdP metadata from its URL again and save the result, audited."""
    from rbac import access

    access.require(user, "change", provider)
    if not provider.idp_metadata_url:
        raise ValidationError({"idp_metadata_url": f"{provider.name} has no metadata URL to fetch; paste the XML instead."})
    before = audit.snapshot(provider)
    apply_metadata(provider, fetch=True)
    with transaction.atomic():
        provider.save()
        audit.record("update", provider, changes=audit.diff(before, audit.snapshot(provider)),
                     message="IdP metadata refreshed from its URL")
    return provider


def generate_sp_key(provider: SSOProvider, *, user=None) -> SSOProvider:
    """Replace the SP key pair with a new one, audited. The IdP must then load Corral's new SP metadata."""
    from rbac import access

    access.require(user, "change", provider)
    before = audit.snapshot(provider)
    provider.sp_private_key = provider.sp_certificate = ""
    ensure_sp_key(provider)
    with transaction.atomic():
        provider.save()
        audit.record("update", provider, changes=audit.diff(before, audit.snapshot(provider)),
                     message="new SP key and certificate generated")
    return provider


def set_local_login(enabled: bool, *, user=None, via: str = "") -> SSOSettings:
    from rbac import access

    with transaction.atomic():
        settings = SSOSettings.objects.select_for_update().filter(pk=1).first() or SSOSettings.load()
        access.require(user, "change", settings)
        before = settings.local_login_enabled
        settings.local_login_enabled = enabled
        settings.save()
        audit.record("update", settings, user=user, changes={"local_login_enabled": [before, enabled]},
                     message=f"local password login turned {'on' if enabled else 'off'}{' via ' + via if via else ''}")
    return settings
