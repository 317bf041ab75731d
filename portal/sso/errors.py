"""Why a SAML sign-in was refused, in words a user and an administrator can act on."""
from __future__ import annotations

import re


class SAMLRefused(Exception):
    """Corral refuses this SAML response. Raised before anything is written; the ACS view renders it.

    ``code`` is short and stable (for tests and the audit log); ``reason`` is the sentence shown;
    ``detail`` (optional) is the technical cause, shown small and kept in the audit row. ``status``
    is the HTTP answer: 401 for a response that was read and refused, a more precise 4xx when the
    request itself is unusable (malformed 400, too large 413, unknown provider 404, wrong method 405).
    """

    def __init__(self, code: str, reason: str, provider=None, *, status: int = 401, detail: str = "",
                 headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.provider = provider
        self.status = status
        self.detail = detail
        self.headers = headers or {}


# python3-saml's validation messages, matched in order, with what they mean for the person reading them.
_EXPLANATIONS: list[tuple[str, str, str]] = [
    (r"Signature validation failed", "bad_signature",
     "The response's signature does not match its content or the identity provider's certificate: "
     "it was changed after it was signed, or it was signed with a key Corral does not trust."),
    (r"No Signature found", "unsigned",
     "The response is not signed. Corral only accepts responses signed by the identity provider."),
    (r"Assertion of the Response is not signed", "unsigned_assertion",
     "The assertion inside the response is not signed, and this provider is set to require signed assertions."),
    (r"Message of the Response is not signed", "unsigned_response",
     "The response is not signed as a whole, and this provider is set to require signed responses."),
    (r"not encrypted and the SP require", "unencrypted",
     "The assertion is not encrypted, and this provider is set to require encrypted assertions."),
    (r"Could not validate timestamp: expired|attributes have expired", "expired",
     "The response has expired (its NotOnOrAfter time has passed). Sign in again; if this keeps happening, "
     "check that the clocks of Corral and the identity provider are right."),
    (r"Could not validate timestamp: not yet valid", "not_yet_valid",
     "The response is not valid yet (its NotBefore time is in the future): check the clocks of Corral and the identity provider."),
    (r"valid SubjectConfirmation was not found", "subject_confirmation",
     "The response's subject confirmation is not valid here: it has expired, is not valid yet, or was issued "
     "for a different address than this Corral's assertion consumer service URL."),
    (r"is not a valid audience", "wrong_audience",
     "The response was issued for another service (its Audience is not Corral's SP entity id). "
     "Check the SP entity id registered at the identity provider."),
    (r"Invalid issuer", "wrong_issuer",
     "The response comes from an issuer Corral does not trust for this provider (its Issuer is not the configured IdP entity id)."),
    (r"was received at .* instead of", "wrong_destination",
     "The response was addressed to a different URL (Destination) than the one it was posted to. "
     "Check the ACS URL registered at the identity provider and how Corral is reached (https, host name)."),
    (r"InResponseTo", "wrong_request",
     "The response answers a different sign-in request."),
    (r"saml-schema-protocol|Unsupported SAML version|Missing ID|must contain 1 assertion|Invalid xml|Invalid response",
     "malformed", "The response is not a well-formed SAML 2.0 response."),
    (r"status code|The status code of the Response was not Success|Responder|Requester", "idp_error",
     "The identity provider reported an error instead of signing you in."),
    (r"deprecated", "deprecated_algorithm",
     "The response is signed with an algorithm too weak to trust (such as SHA-1)."),
]


def explain(reason: str | None) -> tuple[str, str]:
    """``(code, sentence)`` for a python3-saml error reason."""
    text = reason or ""
    for pattern, code, sentence in _EXPLANATIONS:
        if re.search(pattern, text, re.I):
            return code, sentence
    if not text:
        return "unknown", (
            "The sign-in could not be completed: the response arrived without a sign-in started from this browser "
            "(unsolicited sign-in is off for this provider), or the sign-in took too long. Start again from Corral's login page."
        )
    return "invalid", f"The identity provider's response was refused: {text}"
