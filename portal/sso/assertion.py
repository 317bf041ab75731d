"""What Corral takes from a validated SAML response: the mapped attributes and the ids that make it single-use."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from allauth.socialaccount import app_settings as socialaccount_settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from portal.sso.errors import SAMLRefused
from portal.sso.models import SSOProvider, attribute_names

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
GROUP_NAME_MAX = 200


@dataclass
class Assertion:
    provider: SSOProvider
    uid: str
    response_id: str
    assertion_id: str
    not_on_or_after: dt.datetime
    email: str = ""
    display_name: str = ""
    first_name: str = ""
    last_name: str = ""
    groups: list[str] = field(default_factory=list)
    skipped_groups: list[str] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)
    name_id: str = ""


def _values(names: str, attributes: dict, friendly: dict) -> list[list[str]]:
    """The value lists of each configured attribute present, in configured order (Name first, then FriendlyName)."""
    found = []
    for name in attribute_names(names):
        values = attributes.get(name) or friendly.get(name)
        if values:
            found.append([str(v).strip() for v in values if v is not None and str(v).strip()])
    return [v for v in found if v]


def _first(names: str, attributes: dict, friendly: dict) -> str:
    lists = _values(names, attributes, friendly)
    return lists[0][0] if lists else ""


def scope_allowed(scope: str, scopes: list[dict]) -> bool:
    for entry in scopes:
        value = entry.get("value", "")
        if entry.get("regexp"):
            try:
                if re.fullmatch(value, scope):
                    return True
            except re.error:
                continue
        elif value.lower() == scope.lower():
            return True
    return False


def read_assertion(provider: SSOProvider, auth) -> Assertion:
    """Map a response python3-saml has validated; raise :class:`SAMLRefused` when Corral cannot use it."""
    attributes = auth.get_attributes() or {}
    friendly = auth.get_friendlyname_attributes() or {}
    released = sorted(set(attributes) | set(friendly))

    uid = _first(provider.attr_uid, attributes, friendly)
    if not uid and provider.uid_from_nameid and auth.get_nameid_format() == PERSISTENT:
        uid = (auth.get_nameid() or "").strip()
    if not uid:
        looked_for = ", ".join(attribute_names(provider.attr_uid)) or "(no attribute configured)"
        raise SAMLRefused(
            "no_user_id",
            f"{provider.name} did not release a user id: the response has none of {looked_for}"
            f" (it has: {', '.join(released) or 'no attributes at all'}). "
            "Ask the identity provider's administrators to release eduPersonPrincipalName or uid to Corral.",
            provider,
        )
    if len(uid) > socialaccount_settings.UID_MAX_LENGTH:
        raise SAMLRefused("user_id_too_long", f"The user id released by {provider.name} is too long ({len(uid)} characters).", provider)
    if provider.enforce_scope and provider.idp_scopes and "@" in uid:
        scope = uid.rsplit("@", 1)[1]
        if not scope_allowed(scope, provider.idp_scopes):
            declared = ", ".join(s["value"] for s in provider.idp_scopes)
            raise SAMLRefused(
                "wrong_scope",
                f"The user id {uid} has the scope {scope}, which {provider.name}'s metadata does not declare "
                f"(it declares: {declared}). An identity provider may only assert users of its own scopes.",
                provider,
            )

    not_on_or_after = auth.get_last_assertion_not_on_or_after()
    if not not_on_or_after:
        raise SAMLRefused(
            "no_expiry",
            "The response's subject confirmation has no NotOnOrAfter time, which SAML web sign-in requires; "
            "without it a captured response could be replayed forever.",
            provider,
        )
    response_id, assertion_id = auth.get_last_message_id(), auth.get_last_assertion_id()
    if not response_id or not assertion_id:
        raise SAMLRefused("malformed", "The response or its assertion has no ID.", provider)

    email = _first(provider.attr_email, attributes, friendly)
    try:
        validate_email(email)
    except ValidationError:
        email = ""
    display_name = _first(provider.attr_display_name, attributes, friendly)
    first_name = _first(provider.attr_first_name, attributes, friendly)
    last_name = _first(provider.attr_last_name, attributes, friendly)
    if display_name and not (first_name or last_name):
        first_name, _, last_name = display_name.partition(" ")

    groups: list[str] = []
    skipped: list[str] = []
    for values in _values(provider.attr_groups, attributes, friendly):
        for value in values:
            if len(value) > GROUP_NAME_MAX:
                skipped.append(value[:60] + "…")
            elif value not in groups:
                groups.append(value)

    return Assertion(
        provider=provider,
        uid=uid,
        response_id=response_id,
        assertion_id=assertion_id,
        not_on_or_after=dt.datetime.fromtimestamp(int(not_on_or_after), tz=dt.UTC),
        email=email,
        display_name=display_name,
        first_name=first_name[:150],
        last_name=last_name[:150],
        groups=groups,
        skipped_groups=skipped,
        attributes={k: [str(v) for v in vs] for k, vs in attributes.items()},
        name_id=auth.get_nameid() or "",
    )
