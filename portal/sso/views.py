"""The routes Corral puts in front of allauth's: every SAML view (checked first, see
:mod:`portal.sso.inbound`), finishing a SAML sign-in in one transaction, and admin login."""
from __future__ import annotations

from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.providers.saml import views as saml_views
from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt

from portal.sso import inbound
from portal.sso.backends import break_glass_active, local_login_enabled
from portal.sso.errors import SAMLRefused


def render_refusal(request: HttpRequest, refusal: SAMLRefused) -> HttpResponse:
    """allauth's error page with Corral's sentence and the refusal's status, and a failed-login audit row.

    The adapter writes the audit row when the refusal names a provider; otherwise it is written here.
    """
    from allauth.socialaccount.adapter import get_adapter

    from portal.sso.adapter import record_refusal

    context = {"code": refusal.code, "reason": refusal.reason, "detail": refusal.detail}
    provider = None
    if refusal.provider is not None:
        provider = get_adapter().get_provider(request, "saml", client_id=refusal.provider.slug)
    response = render_authentication_error(request, provider, extra_context={"corral_refusal": context})
    if provider is None:
        record_refusal(request, None, context)
    if response.status_code == 401:  # not an ImmediateHttpResponse of the adapter's
        response.status_code = refusal.status
        for header, value in refusal.headers.items():
            response[header] = value
    return response


def _admit(request: HttpRequest, organization_slug: str, methods: tuple[str, ...], max_body: int):
    """The provider named in the URL, once the request has a Host header, an allowed method and a small body."""
    sso = inbound.find_provider(organization_slug)
    inbound.check_request(request, sso, methods, max_body)
    return sso


@csrf_exempt  # the IdP's form posts cross-site without a CSRF token; allauth's ACS is exempt too
def acs(request: HttpRequest, organization_slug: str) -> HttpResponse:
    """allauth's ACS (which stores the POST for the "finish" step) for a well-formed SAMLResponse only."""
    try:
        sso = _admit(request, organization_slug, ("POST",), inbound.MAX_ACS_BODY)
        inbound.check_acs_post(request, sso)
    except SAMLRefused as refusal:
        return render_refusal(request, refusal)
    return saml_views.acs(request, organization_slug=organization_slug)


@csrf_exempt  # it answers GET only; exempt so that another method gets Corral's 405 page, not the CSRF 403
def finish_acs(request: HttpRequest, organization_slug: str) -> HttpResponse:
    """allauth's "finish ACS" step (validate, map, log in) inside one transaction.

    User, SocialAccount, group memberships, used-id records, the session login and their
    audit rows (``create``/``update``, ``role_change``, ``login``) commit together. A refusal
    raised on the way rolls all of it back; only the failed-login audit row is then written.
    An error python3-saml raises while it still reads the response is a refusal too; once
    Corral's provider has taken the accepted response over, errors are Corral's and stay errors.
    """
    sso = None
    try:
        sso = _admit(request, organization_slug, ("GET", "HEAD"), inbound.MAX_OTHER_BODY)
        inbound.check_pending_acs_request(request, sso)
        reason = sso.login_unavailable_reason()
        if reason:  # before allauth builds python3-saml's settings, which fail for a provider without metadata
            raise SAMLRefused("unavailable", reason, sso)
        with transaction.atomic():
            return saml_views.finish_acs(request, organization_slug=organization_slug)
    except SAMLRefused as refusal:
        inbound.drop_pending_acs_request(request)
        return render_refusal(request, refusal)
    except inbound.READ_ERRORS as exc:
        if getattr(request, inbound.ACCEPTED_FLAG, False):
            raise
        inbound.drop_pending_acs_request(request)
        return render_refusal(request, inbound.refusal_for_exception(exc, sso, "SAML response"))


@csrf_exempt  # as allauth's SLS: the IdP redirects the browser here
def sls(request: HttpRequest, organization_slug: str) -> HttpResponse:
    """allauth's logout service for a well-formed HTTP-Redirect message; its plain-text 400 becomes a refusal page."""
    try:
        sso = _admit(request, organization_slug, ("GET", "HEAD"), inbound.MAX_OTHER_BODY)
        if not sso.has_metadata:  # python3-saml's settings cannot be built: nothing to check a message against
            raise SAMLRefused("unavailable", sso.login_unavailable_reason(), sso, status=400)
        inbound.check_redirect_message(request, sso)
        try:
            response = saml_views.sls(request, organization_slug=organization_slug)
        except inbound.READ_ERRORS as exc:
            raise inbound.refusal_for_exception(exc, sso, "SAML logout message") from None
        if response.status_code == 400:
            raise SAMLRefused("logout_refused", "The identity provider's logout message was refused.", sso,
                              status=400, detail=response.content.decode("utf-8", "replace")[:300])
    except SAMLRefused as refusal:
        return render_refusal(request, refusal)
    return response


@csrf_exempt  # GET only, as finish_acs
def metadata(request: HttpRequest, organization_slug: str) -> HttpResponse:
    """allauth's SP metadata, for a provider that exists and a request with a Host header."""
    try:
        _admit(request, organization_slug, ("GET", "HEAD"), inbound.MAX_OTHER_BODY)
    except SAMLRefused as refusal:
        return render_refusal(request, refusal)
    return saml_views.metadata(request, organization_slug=organization_slug)


def login(request: HttpRequest, organization_slug: str) -> HttpResponse:
    """allauth's login start (a confirmation page on GET, the redirect to the IdP on POST), checked first."""
    try:
        # Not HEAD: allauth would start a sign-in (and store its state) for it, as for POST.
        _admit(request, organization_slug, ("GET", "POST"), inbound.MAX_OTHER_BODY)
    except SAMLRefused as refusal:
        return render_refusal(request, refusal)
    return saml_views.login(request, organization_slug=organization_slug)


def admin_login(request, extra_context=None):
    """The admin's password form while local login is on (or break-glass); otherwise the SSO login page."""
    if local_login_enabled() or break_glass_active():
        return admin.site.login(request, extra_context=extra_context)
    url = reverse("account_login")
    next_url = request.GET.get("next")
    return HttpResponseRedirect(f"{url}?{urlencode({'next': next_url})}" if next_url else url)
