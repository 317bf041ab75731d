"""Responses that must be refused — tampered, unsigned, expired, wrong audience, wrong issuer, replayed —
each with a clear message, and without creating or changing anything."""
from __future__ import annotations

import datetime as dt

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from lxml import etree

from portal.models import AuditEvent
from rbac.models import Group
from tests.sso.idp import EPPN, IS_MEMBER_OF, SAML, make_key_and_cert, person

pytestmark = pytest.mark.django_db
User = get_user_model()


def state() -> dict:
    """Everything a sign-in could create or change."""
    return {
        "users": sorted(User.objects.values_list("username", "email", "first_name", "last_name", "is_active")),
        "groups": sorted(Group.objects.values_list("name", "provider")),
        "members": sorted(Group.members.through.objects.values_list("group__name", "group__provider", "user__username")),
        "accounts": sorted((a.provider, a.uid, repr(a.extra_data)) for a in SocialAccount.objects.all()),
    }


def tamper(response: etree._Element, attribute: tuple[str, str], new_value: str) -> etree._Element:
    """Change an attribute value after the IdP signed the response."""
    for node in response.iter(f"{{{SAML}}}Attribute"):
        if node.get("Name") == attribute[0]:
            node.find(f"{{{SAML}}}AttributeValue").text = new_value
    return response


OTHER_KEY = make_key_and_cert("attacker.example.test")

CASES = {
    # name: (how to build the bad response, error code, words the user reads)
    "tampered": (lambda b, r, attrs: tamper(b.response_for(r, attrs), IS_MEMBER_OF, "corral-admins"),
                 "bad_signature", "changed after it was signed"),
    "tampered-user-id": (lambda b, r, attrs: tamper(b.response_for(r, attrs), EPPN, "root@example.test"),
                         "bad_signature", "changed after it was signed"),
    "signed-by-another-key": (lambda b, r, attrs: b.response_for(r, attrs, signer=OTHER_KEY),
                              "bad_signature", "a key Corral does not trust"),
    "unsigned": (lambda b, r, attrs: b.response_for(r, attrs, sign="none"), "unsigned", "is not signed"),
    "expired": (lambda b, r, attrs: b.response_for(r, attrs, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
                "expired", "has expired"),
    "wrong-audience": (lambda b, r, attrs: b.response_for(r, attrs, audience="https://other-sp.example.test/shibboleth"),
                       "wrong_audience", "issued for another service"),
    "wrong-issuer": (lambda b, r, attrs: b.response_for(r, attrs, issuer="https://evil.example.test/idp/shibboleth"),
                     "wrong_issuer", "issuer Corral does not trust"),
    "wrong-destination": (lambda b, r, attrs: b.idp.response(
        acs_url="http://testserver/accounts/saml/other/acs/", audience=b.response_for(r, {}).find(
            f".//{{{SAML}}}Audience").text, in_response_to=r.id, attributes=attrs),
        "wrong_destination", "addressed to a different URL"),
}


@pytest.fixture
def alice_signed_in(make_browser):
    """Alice has signed in once and is in the IdP group "ops"."""
    response = make_browser().login(person("alice", groups=["ops"]))
    assert response.status_code == 302
    return User.objects.get(username="alice@example.test")


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("who", ["new-user", "existing-user"])
def test_bad_response_is_refused_and_changes_nothing(case, who, alice_signed_in, make_browser):
    build, code, words = CASES[case]
    attrs = person("bob" if who == "new-user" else "alice", groups=["ops", "intruders"], mail="changed@example.test")
    before = state()
    failed_before = AuditEvent.objects.filter(action="login_failed").count()

    browser = make_browser()
    request = browser.start()
    response = browser.post(build(browser, request, attrs), request.relay_state)

    page = response.content.decode()
    assert response.status_code == 401, page[:300]
    assert f'data-code="{code}"' in page, page
    assert words in page
    assert "_auth_user_id" not in browser.client.session
    assert state() == before
    failed = AuditEvent.objects.filter(action="login_failed").order_by("-id")
    assert failed.count() == failed_before + 1
    assert f"({code})" in failed.first().message


def test_replayed_response_is_refused_and_changes_nothing(make_browser, provider):
    first = make_browser()
    request = first.start()
    captured = first.response_for(request, person("alice", groups=["ops", "corral-admins"]))
    assert first.post(captured, request.relay_state).status_code == 302
    # Later the IdP takes alice out of corral-admins, and she signs in again.
    assert make_browser().login(person("alice", groups=["ops"])).status_code == 302
    before = state()

    for browser in (first, make_browser()):  # the same browser, then an attacker's browser
        response = browser.post(captured, request.relay_state)
        page = response.content.decode()
        assert response.status_code == 401
        assert 'data-code="replayed"' in page and "already used to sign in once" in page
        assert state() == before
    alice = User.objects.get(username="alice@example.test")
    assert set(alice.corral_groups.values_list("name", flat=True)) == {"ops"}


def test_replay_with_the_same_assertion_in_a_new_response_is_refused(make_browser):
    first = make_browser()
    request = first.start()
    assert first.post(first.response_for(request, person("alice", groups=[]), assertion_id="_fixed-assertion"),
                      request.relay_state).status_code == 302
    second = make_browser()
    request = second.start()
    response = second.post(second.response_for(request, person("alice", groups=["corral-admins"]),
                                               assertion_id="_fixed-assertion"), request.relay_state)
    assert response.status_code == 401 and 'data-code="replayed"' in response.content.decode()


def test_response_for_a_request_this_browser_never_made_is_refused(make_browser):
    victim, attacker = make_browser(), make_browser()
    request = victim.start()
    stolen = victim.response_for(request, person("alice", groups=[]))
    response = attacker.post(stolen, request.relay_state)
    assert response.status_code == 401
    assert 'data-code="unknown_request"' in response.content.decode()
    assert not User.objects.exists()


def test_missing_user_id_is_explained(browser):
    attrs = {k: v for k, v in person("zed", groups=[]).items() if k[1] not in ("eduPersonPrincipalName", "uid")}
    response = browser.login(attrs)
    page = response.content.decode()
    assert response.status_code == 401 and 'data-code="no_user_id"' in page
    assert "did not release a user id" in page and "displayName" in page
    assert not User.objects.exists()


def test_user_id_outside_the_idps_scope_is_refused(browser):
    response = browser.login(person("mallory", groups=[], scope="other-university.test"))
    page = response.content.decode()
    assert response.status_code == 401 and 'data-code="wrong_scope"' in page
    assert "other-university.test" in page
    assert not User.objects.exists()


def test_disabled_user_is_refused_and_nothing_changes(browser, make_browser, alice_signed_in):
    alice_signed_in.is_active = False
    alice_signed_in.save()
    before = state()
    response = make_browser().login(person("alice", groups=["corral-admins"]))
    assert response.status_code == 401 and 'data-code="inactive"' in response.content.decode()
    assert state() == before
    # The ids of the refused response were not kept either: the whole transaction rolled back.
    from portal.sso.models import SAMLMessageID

    assert SAMLMessageID.objects.count() == 2  # alice's first, accepted response and its assertion


def test_a_valid_sign_in_still_works_after_refusals(make_browser):
    bad = make_browser()
    request = bad.start()
    bad.post(bad.response_for(request, person("alice", groups=[]), sign="none"), request.relay_state)
    assert make_browser().login(person("alice", groups=["ops"])).status_code == 302


def test_linking_an_idp_identity_to_a_signed_in_local_account_is_refused(browser, make_user):
    bob = make_user("bob")
    browser.client.force_login(bob)
    response = browser.client.post("/accounts/saml/uni/login/?process=connect")
    request = browser.idp.read_request(response["Location"])
    refused = browser.post(browser.response_for(request, person("alice", groups=["corral-admins"])), request.relay_state)
    assert refused.status_code == 401 and 'data-code="unsupported"' in refused.content.decode()
    assert not SocialAccount.objects.exists() and not Group.objects.exists()
    assert list(User.objects.values_list("username", flat=True)) == ["bob"]
