"""Notifiers in admin: Slack webhooks and SMTP servers (secrets encrypted, never shown back), with a
"send a test message" action."""
from __future__ import annotations

from django.contrib import admin, messages

from notifiers import services
from notifiers.models import Notifier
from portal.admin_base import PortalModelAdmin
from rbac import access


@admin.register(Notifier)
class NotifierAdmin(PortalModelAdmin):
    list_display = ["name", "kind", "description", "last_sent_at", "last_error"]
    list_filter = ["kind"]
    search_fields = ["name", "description"]
    readonly_fields = ["last_sent_at", "last_error"]
    actions = ["send_test_message"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "description"]}),
        ("Slack", {"fields": ["slack_webhook_url", "slack_channel"],
                   "description": "An incoming webhook URL of your Slack workspace."}),
        ("E-mail", {"fields": ["smtp_host", "smtp_port", "smtp_starttls", "smtp_username", "smtp_password",
                               "email_from", "email_to"]}),
        ("Last delivery", {"fields": ["last_sent_at", "last_error"]}),
    ]

    @admin.action(description="Send a test message")
    def send_test_message(self, request, queryset):
        for notifier in access.restrict(queryset, request.user, "change"):
            try:
                services.send_test(notifier, user=request.user)
            except services.NotifyError as exc:
                self.message_user(request, f"{notifier}: the test message was not delivered: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{notifier}: test message sent.")
