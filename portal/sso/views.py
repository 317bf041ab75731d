"""The two routes Corral puts in front of allauth's: finishing a SAML sign-in in one transaction, and admin login."""
from __future__ import annotations

from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.providers.saml import views as saml_views
from django.contrib import admin
from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode

from portal.sso.backends import break_glass_active, local_login_enabled
from portal.sso.errors import SAMLRefused


def render_refusal(request, refusal: SAMLRefused):
    """allauth's error page (HTTP 401) with Corral's sentence; the adapter writes the failed-login audit row."""
    from allauth.socialaccount.adapter import get_adapter

    provider = None
    if refusal.provider is not None:
        provider = get_adapter().get_provider(request, "saml", client_id=refusal.provider.slug)
    return render_authentication_error(
        request, provider,
        extra_context={"corral_refusal": {"code": refusal.code, "reason": refusal.reason, "detail": ""}},
    )


def finish_acs(request, organization_slug: str):
    """allauth's "finish ACS" step (validate, map, log in) inside one transaction.

    User, SocialAccount, group memberships, used-id records, the session login and their
    audit rows (``create``/``update``, ``role_change``, ``login``) commit together. A refusal
    raised on the way rolls all of it back; only the failed-login audit row is then written.
    """
    try:
        with transaction.atomic():
            return saml_views.finish_acs(request, organization_slug=organization_slug)
    except SAMLRefused as refusal:
        return render_refusal(request, refusal)


def admin_login(request, extra_context=None):
    """The admin's password form while local login is on (or break-glass); otherwise the SSO login page."""
    if local_login_enabled() or break_glass_active():
        return admin.site.login(request, extra_context=extra_context)
    url = reverse("account_login")
    next_url = request.GET.get("next")
    return HttpResponseRedirect(f"{url}?{urlencode({'next': next_url})}" if next_url else url)
