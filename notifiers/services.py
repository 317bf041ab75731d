"""Sending through a notifier: Slack incoming webhooks (JSON over HTTPS) and SMTP with STARTTLS and login.

Every feature calls :func:`send`; the admin's "send a test message" calls :func:`send_test`, which
passes the write rule (``change`` on the notifier) first. Secrets never reach logs or errors.
"""
from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage

from django.utils import timezone

from notifiers.models import Notifier
from portal import audit
from portal.crypto import redact
from rbac import access

TIMEOUT = 10.0


class NotifyError(Exception):
    """The message could not be delivered; the reason is in words, without secrets."""


def send(notifier: Notifier, *, subject: str, text: str, fields: dict[str, str] | None = None, link: str = "") -> None:
    try:
        if notifier.kind == Notifier.Kind.SLACK:
            _slack(notifier, subject, text, fields or {}, link)
        else:
            _email(notifier, subject, text, link)
    except NotifyError as exc:
        Notifier.objects.filter(pk=notifier.pk).update(last_error=str(exc)[:2000])
        raise
    Notifier.objects.filter(pk=notifier.pk).update(last_sent_at=timezone.now(), last_error="")


def send_test(notifier: Notifier, *, user=None) -> None:
    access.require(user, "change", notifier)
    audit.record("test", notifier, user=user, message="test message sent")
    send(notifier, subject=f"[Corral] Test message from notifier {notifier.name}",
         text=f"This is a test message from Corral's notifier {notifier.name}. If you read it, alerts will reach you.",
         fields={"Notifier": notifier.name}, link="")


def _slack(notifier: Notifier, subject: str, text: str, fields: dict[str, str], link: str) -> None:
    url = notifier.slack_webhook_url
    if not url:
        raise NotifyError("the notifier has no webhook URL")
    payload: dict = {
        "text": f"*{subject}*\n{text}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": subject[:150]}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(fields.items())[:10]]}
            if fields else {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
        ],
    }
    if link:
        payload["blocks"].append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open the report>"}})
    if notifier.slack_channel:
        payload["channel"] = notifier.slack_channel
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "Corral"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - the admin's own URL
            body = response.read(200).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"Slack answered {exc.code}: {exc.read(200).decode('utf-8', 'replace')}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise NotifyError(f"Slack could not be reached: {redact(str(getattr(exc, 'reason', exc)))}") from None
    if body.strip() not in ("ok", ""):
        raise NotifyError(f"Slack did not accept the message: {body}")


def _email(notifier: Notifier, subject: str, text: str, link: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = notifier.email_from
    message["To"] = ", ".join(notifier.recipients)
    message.set_content(text + (f"\n\nReport: {link}\n" if link else "\n"))
    try:
        with smtplib.SMTP(notifier.smtp_host, notifier.smtp_port, timeout=TIMEOUT) as smtp:
            smtp.ehlo()
            if notifier.smtp_starttls:
                if not smtp.has_extn("starttls"):
                    raise NotifyError("the SMTP server does not offer STARTTLS; turn it off only on a trusted network")
                smtp.starttls(context=_tls_context())
                smtp.ehlo()
            if notifier.smtp_username:
                if not smtp.has_extn("auth"):
                    # Servers offer AUTH only over TLS as a rule: the password is never sent in the clear.
                    raise NotifyError("the SMTP server does not offer a login" +
                                      ("" if notifier.smtp_starttls else " without STARTTLS; turn STARTTLS on"))
                smtp.login(notifier.smtp_username, notifier.smtp_password)
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise NotifyError(f"the SMTP server refused the login ({exc.smtp_code})") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyError(f"the mail could not be sent through {notifier.smtp_host}:{notifier.smtp_port}: {exc}") from None


def _tls_context() -> ssl.SSLContext:
    """The default context; tests point ``SSL_CERT_FILE`` at their own CA."""
    return ssl.create_default_context()
