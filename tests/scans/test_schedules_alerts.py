"""Scheduled scans with alert rules: the messages that reach Slack and the mailbox, and keeping the last N."""
from __future__ import annotations

import datetime as dt
import email

from django.utils import timezone

from notifiers.models import Notifier
from portal.jobs import periodic_tasks
from scans import services
from scans.models import Scan, ScanAlert, ScanProfile, ScanSchedule
from tests.notifiers.conftest import mail, slack  # noqa: F401 - the receivers as fixtures


def _due(schedule: ScanSchedule) -> None:
    ScanSchedule.objects.filter(pk=schedule.pk).update(next_run_at=timezone.now() - dt.timedelta(seconds=1))


def test_scheduled_scans_alert_and_keep_the_last_n(scan_fleet, register, run_jobs, slack, mail, settings):  # noqa: F811
    settings.CORRAL_URL = "https://corral.example.test"
    assert "scans.dispatch" in {t.kind for t in periodic_tasks()}
    cluster = register(scan_fleet, "kube-new")
    schedule = ScanSchedule.objects.create(cluster=cluster, profile=ScanProfile.objects.get(name="cis-1.8-permissive"),
                                           cron="0 3 * * *", keep_last=2)
    slack_n = Notifier.objects.create(name="ops-slack", kind="slack", slack_webhook_url=slack.url)
    mail_n = Notifier.objects.create(name="ops-mail", kind="email", smtp_host="127.0.0.1", smtp_port=mail.port,
                                     smtp_username=mail.USER, smtp_password=mail.PASSWORD,
                                     email_from="corral@example.com", email_to="ops@example.com")
    ScanAlert.objects.create(schedule=schedule, notifier=slack_n, when="always")
    ScanAlert.objects.create(schedule=schedule, notifier=mail_n, when="failure")

    assert services.dispatch_due() == []  # first pass: the next time is computed from the cron line
    schedule.refresh_from_db()
    assert schedule.next_run_at.hour == 3 and schedule.next_run_at > timezone.now()
    scans = []
    for _ in range(3):
        _due(schedule)
        started = services.dispatch_due()
        assert len(started) == 1 and started[0].trigger == Scan.Trigger.SCHEDULED
        run_jobs()
        scans.append(Scan.objects.get(pk=started[0].pk))
    latest = scans[-1]
    assert latest.state == Scan.State.FAILED
    # keep the last 2 scheduled reports
    assert list(Scan.objects.filter(schedule=schedule).order_by("pk").values_list("pk", flat=True)) == [s.pk for s in scans[1:]]

    assert len(slack.messages) == 3
    body = slack.messages[-1]["json"]
    text = body["text"] + str(body["blocks"])
    assert "kube-new" in text and "cis-1.8-permissive" in text
    assert f"{latest.passed} pass, {latest.failed} fail" in text
    assert f"https://corral.example.test/admin/scans/scan/{latest.pk}/report/" in text

    assert len(mail.messages) == 3  # every scan failed a check
    parsed = email.message_from_string(mail.messages[-1]["data"])
    content = parsed.get_payload()
    assert "kube-new" in parsed["Subject"] and "FAILED" in parsed["Subject"]
    assert "Profile: cis-1.8-permissive" in content and f"{latest.failed} fail" in content
    assert f"https://corral.example.test/admin/scans/scan/{latest.pk}/report/" in content
    assert "Failing checks:" in content


def test_failure_only_rules_stay_quiet_when_everything_passes(db, slack):  # noqa: F811
    from clusters.models import Cluster

    cluster = Cluster.objects.create(name="quiet", kubeconfig="x", state="active")
    schedule = ScanSchedule.objects.create(cluster=cluster, profile=ScanProfile.objects.get(name="cis-1.8-hardened"))
    n = Notifier.objects.create(name="ops", kind="slack", slack_webhook_url=slack.url)
    ScanAlert.objects.create(schedule=schedule, notifier=n, when="failure")
    scan = Scan.objects.create(cluster=cluster, schedule=schedule, benchmark="cis-1.8", state="passed", total=1, passed=1)
    assert services.send_alerts(scan) == 0 and not slack.messages
    Scan.objects.filter(pk=scan.pk).update(state="error", errored=1)
    scan.refresh_from_db()
    assert services.send_alerts(scan) == 1  # an Error is never a quiet pass
