"""Checks on every request to allauth's SAML views, run by Corral before allauth or python3-saml reads it.

Why here and not left to python3-saml: it decodes base64 leniently, parses the XML first and
refuses a DTD only afterwards, inflates redirect-binding messages without a size limit, and
lets its parse errors (``DTDForbidden``, ``XMLSyntaxError``, ``zlib.error``, ``KeyError`` for a
missing Host header) escape allauth's views as 500s. These checks are cheap, use fixed limits,
and turn each malformed request into a :class:`SAMLRefused` with a stable code and a 4xx status,
which :func:`portal.sso.views.render_refusal` shows and audits.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import zlib
from urllib.parse import urlparse

import xmlsec
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import HttpRequest, QueryDict, UnreadablePostError
from django.http.multipartparser import MultiPartParserError
from lxml import etree
from onelogin.saml2.errors import OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError
from onelogin.saml2.xmlparser import DTDForbidden, EntitiesForbidden

from portal.sso.errors import SAMLRefused
from portal.sso.models import SSOProvider

logger = logging.getLogger(__name__)

#: Longest SAMLResponse/SAMLRequest accepted, in characters of base64, checked before decoding.
#: Shibboleth responses with a signed, encrypted assertion and many groups stay far below 100 KiB.
MAX_MESSAGE_CHARS = 512 * 1024
#: Longest request body the ACS reads: the message plus room for RelayState and form overhead.
MAX_ACS_BODY = MAX_MESSAGE_CHARS + 64 * 1024
#: Longest body any other SAML view reads (none of them expects one beyond a CSRF token).
MAX_OTHER_BODY = 64 * 1024
#: Longest inflated redirect-binding message (a LogoutRequest/Response is a few KiB).
MAX_INFLATED_BYTES = 1024 * 1024
#: SAML allows 80 bytes of RelayState; IdP-initiated sign-ins sometimes put a URL there.
MAX_RELAY_STATE = 1024

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")
_SESSION_KEY = re.compile(r"[a-z0-9]{8,64}")
_DTD_MARK = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_ACS_SESSION_COOKIE = "saml-acs-session"
#: Set on the finish request by Corral's provider once python3-saml accepted the response: from then on an
#: exception is a bug in Corral, not a malformed response.
ACCEPTED_FLAG = "corral_saml_accepted"

#: What python3-saml, lxml and xmlsec raise on hostile input that gets past these checks anyway;
#: caught by the views only while the response is still being read (see :func:`refusal_for_exception`).
READ_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, TypeError, KeyError, AttributeError, IndexError, LookupError,
    etree.LxmlError, xmlsec.Error, zlib.error, OneLogin_Saml2_Error, OneLogin_Saml2_ValidationError,
)

_ANSWER_AGAIN = "Start again from Corral's login page; if this keeps happening, tell a Corral administrator."


def _malformed(sso: SSOProvider | None, reason: str, detail: str = "") -> SAMLRefused:
    return SAMLRefused("malformed", f"{reason} {_ANSWER_AGAIN}", sso, status=400, detail=detail[:300])


def _too_large(sso: SSOProvider | None, what: str, limit: int) -> SAMLRefused:
    return SAMLRefused(
        "too_large", f"The {what} is larger than Corral accepts ({limit // 1024} KiB), so it was not read. "
        + _ANSWER_AGAIN, sso, status=413,
    )


def _dtd_forbidden(sso: SSOProvider | None, what: str) -> SAMLRefused:
    return SAMLRefused(
        "dtd_forbidden", f"The {what} contains a document type declaration (DOCTYPE or ENTITY). SAML messages "
        "never contain one and Corral refuses them unread: they are how XML entity attacks work.", sso, status=400,
    )


def find_provider(slug: str) -> SSOProvider:
    """The provider named in the URL, refused as ``unknown_provider`` (404) before anything else is looked up."""
    sso = SSOProvider.objects.filter(slug=slug).first() if _SLUG.fullmatch(slug) else None
    if sso is None:
        shown = "".join(ch if ch.isprintable() else "?" for ch in slug[:64])
        raise SAMLRefused(
            "unknown_provider", f"Corral has no single sign-on provider named “{shown}”. Check the address "
            "(the ACS, login or metadata URL registered at the identity provider).", None, status=404,
        )
    return sso


def check_request(request: HttpRequest, sso: SSOProvider, methods: tuple[str, ...], max_body: int) -> None:
    """Host header, method and body size: what every SAML view needs before it reads anything."""
    if not request.META.get("HTTP_HOST"):
        # allauth builds the ACS and metadata URLs from request.META["HTTP_HOST"] (a KeyError without it).
        raise SAMLRefused(
            "no_host", "The request has no Host header, so Corral cannot tell which address it was sent to. "
            "Browsers always send one: check the proxy in front of Corral.", sso, status=400,
        )
    if request.method not in methods:
        shown = "".join(ch for ch in str(request.method)[:20] if ch.isalnum())
        raise SAMLRefused(
            "method_not_allowed", f"This address accepts only {' or '.join(m for m in methods if m != 'HEAD')} "
            f"requests; it was sent a {shown} request.", sso, status=405, headers={"Allow": ", ".join(methods)},
        )
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise _malformed(sso, "The request's Content-Length header is not a number.") from None
    if length > max_body:
        raise _too_large(sso, "request", max_body)
    try:
        request.POST  # noqa: B018 - parse the body now, where its errors are refusals
    except RequestDataTooBig:
        raise _too_large(sso, "request", max_body) from None
    except TooManyFieldsSent:
        raise SAMLRefused("too_large", "The request carries more form fields than Corral reads (a SAML message has "
                          "two or three), so it was not read. " + _ANSWER_AGAIN, sso, status=413) from None
    except (MultiPartParserError, UnreadablePostError, SuspiciousOperation, ValueError) as exc:
        raise _malformed(sso, "The request body could not be read as a form.", type(exc).__name__) from None


def _single(data: QueryDict, name: str, sso: SSOProvider) -> str | None:
    values = data.getlist(name)
    if len(values) > 1:
        raise _malformed(sso, f"The request carries {name} {len(values)} times; a SAML message carries it once.")
    return values[0] if values else None


def check_relay_state(data: QueryDict, sso: SSOProvider) -> None:
    """RelayState is opaque to Corral, but it must be short, printable and (if a URL) parseable."""
    relay_state = _single(data, "RelayState", sso)
    if not relay_state:
        return
    problem = ""
    if len(relay_state) > MAX_RELAY_STATE:
        problem = f"it is longer than {MAX_RELAY_STATE} characters"
    elif not relay_state.isprintable() or "\ufffd" in relay_state:
        problem = "it contains control characters or bytes that are not UTF-8"
    else:
        try:
            urlparse(relay_state)
        except ValueError:
            problem = "it looks like a URL but cannot be parsed as one"
    if problem:
        raise SAMLRefused(
            "bad_relay_state", f"The RelayState sent with the SAML message is not usable: {problem}. " + _ANSWER_AGAIN,
            sso, status=400,
        )


def _decode_base64(value: str, sso: SSOProvider, what: str) -> bytes:
    compact = re.sub(r"[ \t\r\n]+", "", value)
    if not compact:
        raise _missing(sso, what)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _malformed(sso, f"The {what} is not valid base64, so it cannot be read.", str(exc)) from None


def _missing(sso: SSOProvider, what: str) -> SAMLRefused:
    return SAMLRefused(
        "missing", f"The request carries no {what} (the field is missing or empty); SAML messages reach this "
        "address from the identity provider, through the browser. " + _ANSWER_AGAIN, sso, status=400,
    )


def parse_xml(raw: bytes, sso: SSOProvider, what: str, *, post_binding: bool = False) -> etree._Element:
    """Parse a SAML message without loading DTDs, resolving entities or using the network; refuse any DTD."""
    if _DTD_MARK.search(raw):
        raise _dtd_forbidden(sso, what)
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False,
                             remove_pis=True)
    try:
        root = etree.fromstring(raw, parser=parser)
    except (etree.LxmlError, ValueError) as exc:
        if post_binding and _inflates(raw):
            raise _malformed(sso, f"The {what} is compressed (deflated); the HTTP-POST binding sends it "
                                  "uncompressed. Check the binding the identity provider uses.") from None
        raise _malformed(sso, f"The {what} is not XML.", str(exc)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _dtd_forbidden(sso, what)  # e.g. a DOCTYPE hidden from the byte check by UTF-16
    return root


def _inflates(raw: bytes) -> bool:
    try:
        return zlib.decompressobj(-15).decompress(raw, 64).lstrip().startswith(b"<")
    except zlib.error:
        return False


def _expect_root(root: etree._Element, names: tuple[str, ...], sso: SSOProvider, what: str) -> None:
    if root.tag in tuple(f"{{{SAMLP}}}{name}" for name in names):
        return
    tag = etree.QName(root).localname if isinstance(root.tag, str) else "?"
    expected = " or ".join(f"samlp:{name}" for name in names)
    raise _malformed(sso, f"The {what} is XML but not a SAML 2.0 {' or '.join(names)} "
                          f"(its root element is <{tag[:60]}>, not <{expected}>).")


def check_acs_post(request: HttpRequest, sso: SSOProvider) -> None:
    """The HTTP-POST binding: one SAMLResponse, base64 of a SAML 2.0 Response without DTD, within the limits."""
    data = request.POST
    message = _single(data, "SAMLResponse", sso)
    if message is None or not message.strip():
        raise _missing(sso, "SAML response")
    if len(message) > MAX_MESSAGE_CHARS:
        raise _too_large(sso, "SAML response", MAX_MESSAGE_CHARS)
    check_relay_state(data, sso)
    raw = _decode_base64(message, sso, "SAML response")
    root = parse_xml(raw, sso, "SAML response", post_binding=True)
    _expect_root(root, ("Response",), sso, "SAML response")


def check_redirect_message(request: HttpRequest, sso: SSOProvider) -> None:
    """The HTTP-Redirect binding of the logout service: one message, deflated or not, inflated within a limit."""
    data = request.GET
    if "SAMLRequest" in data and "SAMLResponse" in data:
        raise _malformed(sso, "The request carries both a SAMLRequest and a SAMLResponse.")
    is_request = "SAMLRequest" in data  # python3-saml reads whichever is present
    message = _single(data, "SAMLRequest" if is_request else "SAMLResponse", sso)
    what = "SAML logout request" if is_request else "SAML logout response"
    if not message or not message.strip():
        raise _missing(sso, "SAML logout message")
    if len(message) > MAX_MESSAGE_CHARS:
        raise _too_large(sso, what, MAX_MESSAGE_CHARS)
    check_relay_state(data, sso)
    for name in ("Signature", "SigAlg"):
        value = _single(data, name, sso)
        if value is not None and (len(value) > 4096 or not value.isprintable()):
            raise _malformed(sso, f"The {name} parameter of the {what} is not usable.")
    signature = data.get("Signature")
    if signature is not None:
        _decode_base64(signature, sso, f"signature of the {what}")
    raw = _decode_base64(message, sso, what)
    # python3-saml inflates with zlib.decompress (no size limit) and reads the message as it came when that
    # fails: inflate the same way here, but stop at MAX_INFLATED_BYTES.
    inflater = zlib.decompressobj(-15)
    try:
        inflated = inflater.decompress(raw, MAX_INFLATED_BYTES)
    except zlib.error:
        inflated = None
    if inflated is not None and not inflater.eof and (inflater.unconsumed_tail or len(inflated) >= MAX_INFLATED_BYTES):
        raise _too_large(sso, f"inflated {what}", MAX_INFLATED_BYTES)
    if inflated is not None and inflater.eof:
        raw = inflated
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed(sso, f"The {what} is not UTF-8 text.") from None
    root = parse_xml(raw, sso, what)
    _expect_root(root, ("LogoutRequest",) if is_request else ("LogoutResponse",), sso, what)


def check_pending_acs_request(request: HttpRequest, sso: SSOProvider) -> None:
    """The finish step needs the response the ACS stored for this browser; without it there is nothing to finish."""
    if not _SESSION_KEY.fullmatch(request.COOKIES.get(_ACS_SESSION_COOKIE, "")):
        raise SAMLRefused(
            "no_response", "No SAML response is waiting to be finished in this browser: this address is "
            "reached only right after the identity provider posted a response to Corral. " + _ANSWER_AGAIN,
            sso, status=400,
        )


def drop_pending_acs_request(request: HttpRequest) -> None:
    """Forget the response the ACS stored, so a refused one is not tried again (allauth does so once it reads it)."""
    if _SESSION_KEY.fullmatch(request.COOKIES.get(_ACS_SESSION_COOKIE, "")):  # a garbage key is no DB query
        from allauth.socialaccount.sessions import LoginSession

        LoginSession(request, "saml_acs_session", _ACS_SESSION_COOKIE).delete()


def refusal_for_exception(exc: BaseException, sso: SSOProvider | None, what: str = "SAML message") -> SAMLRefused:
    """The refusal for an error python3-saml (or lxml, xmlsec) raised while reading a message Corral passed on."""
    logger.warning("%s via provider %s could not be read", what, getattr(sso, "slug", "?"), exc_info=exc)
    if isinstance(exc, (DTDForbidden, EntitiesForbidden)):
        return _dtd_forbidden(sso, what)
    return _malformed(sso, f"The {what} could not be read.", f"{type(exc).__name__}: {exc}")
