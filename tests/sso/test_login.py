"""A real signed SAML exchange with the in-process IdP: sign-in, user and group sync, roles that follow the groups."""
from __future__ import annotations

import base64
import datetime as dt

import pytest
from allauth.socialaccount.models import SocialAccount
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.contrib.auth import get_user_model

from portal.models import AuditEvent
from portal.sso import keys
from rbac.models import GlobalRole, GlobalRoleBinding, Group
from tests.sso.conftest import SP_ENTITY_ID
from tests.sso.idp import UID, person

pytestmark = pytest.mark.django_db
User = get_user_model()


def idp_groups(user, provider) -> set[str]:
    return set(user.corral_groups.filter(provider=provider.slug).values_list("name", flat=True))


def test_valid_assertion_signs_in_creates_the_user_and_syncs_groups(browser, provider):
    response = browser.login(person("alice", groups=["corral-admins", "ops"], name="Alice Liddell"))

    assert response.status_code == 302 and response["Location"] == "/admin/"
    alice = User.objects.get(username="alice@example.test")
    assert (alice.email, alice.first_name, alice.last_name) == ("alice@example.test", "Alice", "Liddell")
    assert not alice.has_usable_password()
    assert SocialAccount.objects.get(user=alice).uid == "alice@example.test"
    assert SocialAccount.objects.get(user=alice).provider == provider.slug
    assert idp_groups(alice, provider) == {"corral-admins", "ops"}
    assert set(Group.objects.filter(provider=provider.slug).values_list("name", flat=True)) == {"corral-admins", "ops"}

    # The session belongs to alice: the admin answers her, not the login page.
    assert browser.client.get("/admin/").status_code == 200
    assert int(browser.client.session["_auth_user_id"]) == alice.pk
    assert browser.client.session["_auth_user_backend"] == "portal.sso.backends.SAMLBackend"

    events = {e.action: e for e in AuditEvent.objects.filter(user=alice)}
    assert {"create", "role_change", "login"} <= set(events)
    assert "added corral-admins, ops" in events["role_change"].message
    assert events["login"].message == "via SAMLBackend"
    assert events["login"].source_ip == "127.0.0.1"


def test_global_role_bound_to_an_idp_group_follows_the_group(browser, make_browser, provider):
    admins = Group.objects.create(name="corral-admins", provider=provider.slug)
    GlobalRoleBinding.objects.create(role=GlobalRole.objects.get(name="admin"), group=admins)

    browser.login(person("alice", groups=["corral-admins", "ops"]))
    # Next request: the admin role reaches alice through the group, in the API and the admin.
    listed = browser.client.get("/v3/sso-providers/").json()
    assert [p["slug"] for p in listed["results"]] == [provider.slug]
    assert browser.client.get(f"/v3/sso-providers/{provider.pk}/").status_code == 200
    assert browser.client.get(f"/admin/portal/ssoprovider/{provider.pk}/change/").status_code == 200

    # The IdP drops the group: the next sign-in removes the membership and with it the role.
    again = make_browser()
    again.login(person("alice", groups=["ops"]))
    alice = User.objects.get(username="alice@example.test")
    assert idp_groups(alice, provider) == {"ops"}
    assert again.client.get("/v3/sso-providers/").json()["results"] == []
    assert again.client.get(f"/v3/sso-providers/{provider.pk}/").status_code == 404
    assert again.client.get(f"/admin/portal/ssoprovider/{provider.pk}/change/").status_code == 404
    change = AuditEvent.objects.filter(user=alice, action="role_change").order_by("-id").first()
    assert "removed corral-admins" in change.message
    assert change.changes["groups"] == [["corral-admins", "ops"], ["ops"]]
    assert Group.objects.filter(name="corral-admins", provider=provider.slug).exists()  # the group itself stays


def test_sync_never_touches_local_groups_or_other_providers_groups(browser, make_browser, provider, make_provider):
    browser.login(person("alice", groups=["ops"]))
    alice = User.objects.get(username="alice@example.test")
    local = Group.objects.create(name="ops", provider="")
    other = Group.objects.create(name="ops", provider="other-idp")
    local.members.add(alice)
    other.members.add(alice)

    make_browser().login(person("alice", groups=[]))

    assert idp_groups(alice, provider) == set()
    assert set(alice.corral_groups.values_list("name", "provider")) == {("ops", ""), ("ops", "other-idp")}


def test_groups_attribute_missing_removes_idp_groups(browser, make_browser, provider):
    browser.login(person("alice", groups=["ops"]))
    make_browser().login(person("alice", groups=None))
    assert idp_groups(User.objects.get(username="alice@example.test"), provider) == set()


def test_later_sign_in_updates_name_and_email(browser, make_browser):
    browser.login(person("alice", groups=[]))
    make_browser().login(person("alice", groups=[], name="Alice Pleasance", mail="a.liddell@example.test"))
    alice = User.objects.get(username="alice@example.test")
    assert (alice.first_name, alice.last_name, alice.email) == ("Alice", "Pleasance", "a.liddell@example.test")
    update = AuditEvent.objects.get(user=alice, action="update")
    assert update.changes["email"] == ["alice@example.test", "a.liddell@example.test"]


def test_an_idp_user_never_takes_over_a_local_account_with_the_same_name(browser, django_user_model):
    root = django_user_model.objects.create_superuser("alice@example.test", "alice@example.test", "pw-root-123")
    response = browser.login(person("alice", groups=[]))
    assert response.status_code == 302
    session_user = int(browser.client.session["_auth_user_id"])
    assert session_user != root.pk
    assert User.objects.get(pk=session_user).username == "alice@example.test-2"
    assert not User.objects.get(pk=session_user).is_superuser


def test_uid_falls_back_to_the_uid_attribute(browser):
    attrs = person("carol", groups=[])
    del attrs[next(k for k in attrs if k[1] == "eduPersonPrincipalName")]
    assert browser.login(attrs).status_code == 302
    assert SocialAccount.objects.get().uid == "carol"


def test_attributes_match_by_friendly_name_too(browser, provider):
    provider.attr_uid = "uid"
    provider.attr_groups = "isMemberOf"
    provider.save()
    browser.login(person("dave", groups=["ops"]))
    account = SocialAccount.objects.get()
    assert account.uid == "dave"
    assert idp_groups(account.user, provider) == {"ops"}


@pytest.mark.parametrize("sign", ["assertion", "both"])
def test_signed_assertion_or_both_are_accepted(browser, sign):
    assert browser.login(person("erin", groups=[]), sign=sign).status_code == 302


def test_authn_request_is_signed_with_the_key_from_sp_metadata(browser, provider):
    request = browser.start()
    assert request.issuer == SP_ENTITY_ID
    assert request.acs_url == "http://testserver/accounts/saml/uni/acs/"
    # HTTP-Redirect binding: the signature covers the URL-encoded SAMLRequest, RelayState and SigAlg, in that order.
    raw = request.raw_query
    signed = "&".join(f"{k}={raw[k]}" for k in ("SAMLRequest", "RelayState", "SigAlg") if k in raw)
    assert request.query["SigAlg"] == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    public_key = keys.load_certificate(provider.sp_certificate).public_key()
    public_key.verify(base64.b64decode(request.query["Signature"]), signed.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_idp_initiated_sign_in_is_refused_unless_allowed(browser, provider, idp):
    unsolicited = idp.response(acs_url="http://testserver/accounts/saml/uni/acs/", audience=SP_ENTITY_ID,
                               attributes=person("frank", groups=[]))
    refused = browser.post(unsolicited)
    assert "without a sign-in started from this browser" in refused.content.decode()
    assert not User.objects.filter(username="frank@example.test").exists()

    provider.allow_idp_initiated = True
    provider.save()
    unsolicited = idp.response(acs_url="http://testserver/accounts/saml/uni/acs/", audience=SP_ENTITY_ID,
                               attributes=person("frank", groups=[]))
    accepted = browser.post(unsolicited, relay_state="/admin/portal/job/")
    assert accepted.status_code == 302 and accepted["Location"] == "/admin/portal/job/"
    assert User.objects.filter(username="frank@example.test").exists()


def test_login_button_and_sp_metadata_come_from_the_database(client, provider, sp_keypair, settings):
    settings.ALLOWED_HOSTS = ["testserver", "corral.example.test"]
    page = client.get("/accounts/login/").content.decode()
    assert "Example University" in page and "/accounts/saml/uni/login/" in page

    metadata = client.get("/accounts/saml/uni/metadata/", HTTP_HOST="corral.example.test")
    assert metadata.status_code == 200 and metadata["Content-Type"].startswith("text/xml")
    text = metadata.content.decode()
    assert f'entityID="{SP_ENTITY_ID}"' in text
    assert 'Location="http://corral.example.test/accounts/saml/uni/acs/"' in text
    assert keys.to_base64(sp_keypair[1])[:60] in text
    assert "PRIVATE KEY" not in text and keys.to_base64(sp_keypair[0])[40:100] not in text


def test_metadata_is_served_before_the_idp_is_configured(client, make_provider):
    draft = make_provider("draft", metadata="", enabled=False)
    response = client.get("/accounts/saml/draft/metadata/", HTTP_HOST="testserver")
    assert response.status_code == 200, response.content
    assert draft.slug not in client.get("/accounts/login/").content.decode()


def test_disabled_provider_refuses_to_start_and_to_finish(browser, provider):
    request = browser.start()
    provider.enabled = False
    provider.save()
    refused = browser.post(browser.response_for(request, person("gina", groups=[])), request.relay_state)
    assert refused.status_code == 401
    assert "turned off" in refused.content.decode()
    start = browser.client.post("/accounts/saml/uni/login/")
    assert start.status_code == 401 and "turned off" in start.content.decode()
    assert not User.objects.filter(username="gina@example.test").exists()


def test_expiry_is_remembered_for_replay_protection(browser, provider):
    from portal.sso.models import SAMLMessageID

    browser.login(person("hank", groups=[]), lifetime=dt.timedelta(minutes=5))
    ids = SAMLMessageID.objects.filter(provider=provider)
    assert sorted(ids.values_list("kind", flat=True)) == ["assertion", "response"]
    assert all(i.expires_at > i.used_at + dt.timedelta(minutes=5) for i in ids)


def test_uid_attribute_names_are_configurable(browser, provider):
    provider.attr_uid = UID[0]
    provider.save()
    browser.login(person("ivy", groups=[]))
    assert SocialAccount.objects.get().uid == "ivy"


@pytest.mark.parametrize("sign", ["response", "assertion"])
def test_encrypted_assertion_is_decrypted_with_the_sp_key(browser, provider, sign):
    """Shibboleth encrypts assertions for the certificate in Corral's SP metadata by default."""
    response = browser.login(person("judy", groups=["ops"]), sign=sign, encrypt_for=provider.sp_certificate)
    assert response.status_code == 302
    account = SocialAccount.objects.get()
    assert account.uid == "judy@example.test"
    assert idp_groups(account.user, provider) == {"ops"}


def test_plain_assertion_is_refused_when_encryption_is_required(browser, provider):
    provider.want_assertions_encrypted = True
    provider.save()
    refused = browser.login(person("kim", groups=[]))
    assert refused.status_code == 401 and 'data-code="unencrypted"' in refused.content.decode()
    assert browser.login(person("kim", groups=[]), encrypt_for=provider.sp_certificate).status_code == 302


def test_users_cannot_disconnect_their_idp_identity(browser):
    browser.login(person("lena", groups=["ops"]))
    account = SocialAccount.objects.get()
    response = browser.client.post("/accounts/3rdparty/", {"account": account.pk})
    assert response.context["form"].errors  # "no password set up"
    assert SocialAccount.objects.filter(pk=account.pk).exists()

    # Even with a password (e.g. set by an administrator) the identity stays.
    account.user.set_password("pw-lena-123")
    account.user.save()
    browser.client.force_login(account.user)
    response = browser.client.post("/accounts/3rdparty/", {"account": account.pk})
    assert "cannot be disconnected" in str(response.context["form"].errors)
    assert SocialAccount.objects.filter(pk=account.pk).exists()
