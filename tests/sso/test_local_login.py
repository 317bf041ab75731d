"""Local password login can be turned off; SSO keeps working; break-glass lets superusers in."""
from __future__ import annotations

import pytest
from django.core.management import call_command

from portal.models import AuditEvent
from portal.sso.models import SSOSettings
from tests.sso.idp import person

pytestmark = pytest.mark.django_db


@pytest.fixture
def local_login_off(db):
    settings = SSOSettings.load()
    settings.local_login_enabled = False
    settings.save()


@pytest.fixture
def bob(make_user):
    return make_user("bob")


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_password_login_works_while_local_login_is_on(client, bob):
    response = client.post("/accounts/login/", {"login": "bob", "password": "pw-123456"})
    assert response.status_code == 302 and signed_in(client)


def test_password_login_is_refused_with_a_clear_message_when_off(client, bob, local_login_off):
    response = client.post("/accounts/login/", {"login": "bob", "password": "pw-123456"})
    assert response.status_code == 200
    assert "Password sign-in is turned off for Corral" in response.content.decode()
    assert not signed_in(client)
    assert AuditEvent.objects.filter(action="login_failed", message="failed login for 'bob'").exists()
    assert client.login(username="bob", password="pw-123456") is False  # every backend path is closed


def test_admin_login_sends_users_to_single_sign_on_when_off(client, bob, provider, local_login_off):
    response = client.get("/admin/login/?next=/admin/portal/job/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Fadmin%2Fportal%2Fjob%2F"
    assert client.post("/admin/login/", {"username": "bob", "password": "pw-123456"}).status_code == 302
    assert not signed_in(client)
    page = client.get(response["Location"]).content.decode()
    assert "Password sign-in is turned off" in page
    assert "/accounts/saml/uni/login/" in page and "Example University" in page
    assert 'name="password"' not in page


def test_admin_login_page_is_unchanged_while_local_login_is_on(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200 and 'name="password"' in response.content.decode()


def test_sso_still_signs_in_when_local_login_is_off(browser, local_login_off):
    assert browser.login(person("alice", groups=[])).status_code == 302
    assert signed_in(browser.client)


def test_break_glass_lets_only_superusers_in(client, bob, admin_user, local_login_off, settings):
    settings.CORRAL_LOCAL_LOGIN_BREAK_GLASS = True
    page = client.get("/accounts/login/").content.decode()
    assert "Break-glass is active" in page and 'name="password"' in page

    refused = client.post("/accounts/login/", {"login": "bob", "password": "pw-123456"})
    assert "Password sign-in is turned off" in refused.content.decode() and not signed_in(client)

    allowed = client.post("/accounts/login/", {"login": "root", "password": "pw-root-123"})
    assert allowed.status_code == 302 and signed_in(client)
    assert client.get("/admin/login/").status_code in (200, 302)


def test_management_command_is_the_break_glass_switch(local_login_off, capsys):
    call_command("local_login", "status")
    assert "Local password login is off." in capsys.readouterr().out
    call_command("local_login", "on")
    assert "Local password login is on." in capsys.readouterr().out
    assert SSOSettings.load().local_login_enabled is True
    event = AuditEvent.objects.get(action="update", message__contains="manage.py local_login")
    assert event.changes == {"local_login_enabled": [False, True]}


def test_nobody_can_sign_themselves_up(client):
    response = client.post("/accounts/signup/", {"username": "eve", "password1": "x-Very-long-1", "password2": "x-Very-long-1"})
    assert "Sign Up Closed" in response.content.decode()
    assert not signed_in(client)


def test_sso_users_never_sign_in_with_a_password(make_browser):
    """A password would let them in without the IdP, with groups that are no longer refreshed."""
    make_browser().login(person("alice", groups=["ops"]))
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    alice = get_user_model().objects.get(username="alice@example.test")
    alice.set_password("pw-alice-123")
    alice.save()
    response = client.post("/accounts/login/", {"login": "alice@example.test", "password": "pw-alice-123"})
    assert "This account signs in with single sign-on" in response.content.decode()
    assert not signed_in(client)
    assert client.login(username="alice@example.test", password="pw-alice-123") is False
