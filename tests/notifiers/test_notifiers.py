"""Notifiers against local receivers: Slack webhooks over HTTP, e-mail over SMTP with STARTTLS and login."""
from __future__ import annotations

import email
import time

import pytest

from notifiers import services
from notifiers.models import Notifier
from portal.crypto import MASK


def _slack(url: str) -> Notifier:
    return Notifier.objects.create(name="ops-slack", kind="slack", slack_webhook_url=url, slack_channel="#alerts")


def _mail(receiver, password=None) -> Notifier:
    return Notifier.objects.create(name="ops-mail", kind="email", smtp_host="127.0.0.1", smtp_port=receiver.port,
                                   smtp_username=receiver.USER, smtp_password=password or receiver.PASSWORD,
                                   email_from="corral@example.com", email_to="ops@example.com, sec@example.com")


def test_slack_message(db, slack):
    n = _slack(slack.url)
    services.send(n, subject="Scan failed", text="cluster: a", fields={"Cluster": "a"}, link="http://corral/x")
    (msg,) = slack.messages
    assert msg["path"] == "/services/T000/B000/secret-token" and msg["content_type"] == "application/json"
    body = msg["json"]
    assert body["channel"] == "#alerts" and "Scan failed" in body["text"]
    assert any("http://corral/x" in str(b) for b in body["blocks"])
    n.refresh_from_db()
    assert n.last_sent_at is not None and n.last_error == ""


def test_slack_refusal_is_reported(db, slack):
    slack.answer = (404, b"no_team")
    n = _slack(slack.url)
    try:
        services.send(n, subject="x", text="y")
    except services.NotifyError as exc:
        assert "404" in str(exc) and "no_team" in str(exc)
    else:
        raise AssertionError("a refused message must raise")
    n.refresh_from_db()
    assert "404" in n.last_error and "secret-token" not in n.last_error


def test_mail_over_starttls_with_login(db, mail):
    n = _mail(mail)
    services.send(n, subject="[Corral] CIS scan", text="Cluster: a\nCounts: 1 pass", link="http://corral/r/1")
    (msg,) = mail.messages
    assert msg["tls"] and mail.logins == ["corral"]
    assert msg["from"] == "corral@example.com" and sorted(msg["to"]) == ["ops@example.com", "sec@example.com"]
    parsed = email.message_from_string(msg["data"])
    assert parsed["Subject"] == "[Corral] CIS scan"
    assert "Counts: 1 pass" in parsed.get_payload() and "http://corral/r/1" in parsed.get_payload()


def test_a_wrong_password_is_refused_at_once_and_delivers_nothing(db, mail):
    n = _mail(mail, password="wrong-password")
    started = time.monotonic()
    with pytest.raises(services.NotifyError) as refused:
        services.send(n, subject="x", text="y")
    assert time.monotonic() - started < 3  # the server's 535, not a timeout
    assert str(refused.value) == "the SMTP server refused the login (535)"
    assert set(mail.logins) == {"corral"} and not mail.messages  # it tried, over TLS, and sent nothing
    n.refresh_from_db()
    assert n.last_error == "the SMTP server refused the login (535)" and n.last_sent_at is None


def test_no_login_without_starttls(db, mail):
    """The server offers AUTH only over TLS: a notifier with STARTTLS off never sends its password in the clear."""
    n = _mail(mail)
    n.smtp_starttls = False
    n.save()
    with pytest.raises(services.NotifyError, match="does not offer a login without STARTTLS"):
        services.send(n, subject="x", text="y")
    assert not mail.logins and not mail.messages


def test_secrets_are_encrypted_and_never_shown_back(db, slack, admin_api, admin_user, client):
    r = admin_api.post("/v3/notifiers/", {"name": "api-slack", "kind": "slack", "slack_webhook_url": slack.url},
                       format="json")
    assert r.status_code == 201, r.content
    assert slack.url not in r.content.decode() and r.json()["slack_webhook_url"].startswith(MASK)
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT slack_webhook_url FROM notifiers_notifier WHERE name = 'api-slack'")
        stored = cur.fetchone()[0]
    assert stored.startswith("fernet:") and "secret-token" not in stored
    pk = r.json()["id"]
    assert admin_api.patch(f"/v3/notifiers/{pk}/", {"description": "kept"}, format="json").status_code == 200
    assert Notifier.objects.get(pk=pk).slack_webhook_url == slack.url
    client.force_login(admin_user)
    page = client.get(f"/admin/notifiers/notifier/{pk}/change/").content.decode()
    assert "secret-token" not in page
    bad = admin_api.post("/v3/notifiers/", {"name": "no-url", "kind": "slack"}, format="json")
    assert bad.status_code == 400 and "slack_webhook_url" in bad.json()["error"]["fields"]


def test_send_a_test_message_from_api_and_admin(db, slack, admin_api, admin_user, client):
    n = _slack(slack.url)
    assert admin_api.post(f"/v3/notifiers/{n.pk}/test/").status_code == 200
    client.force_login(admin_user)
    r = client.post("/admin/notifiers/notifier/", {"action": "send_test_message", "_selected_action": [n.pk]})
    assert r.status_code == 302
    assert len(slack.messages) == 2 and all("Test message" in m["json"]["text"] for m in slack.messages)
    slack.answer = (500, b"boom")
    r = admin_api.post(f"/v3/notifiers/{n.pk}/test/")
    assert r.status_code == 409 and "500" in r.json()["error"]["message"]


def test_users_without_notifier_rights_cannot_see_or_test(db, slack, make_user, api):
    n = _slack(slack.url)
    api.force_login(make_user("plain"))
    assert api.get(f"/v3/notifiers/{n.pk}/").status_code == 404
    assert api.post(f"/v3/notifiers/{n.pk}/test/").status_code == 404
    assert not slack.messages
