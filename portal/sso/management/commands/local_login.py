"""Break-glass: turn local password login on or off from the server's shell, audited."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from portal.sso.backends import local_login_enabled
from portal.sso.services import set_local_login


class Command(BaseCommand):
    help = (
        "Show, or turn on/off, local username/password login. Use 'on' when SSO is broken and nobody can sign in; "
        "turn it off again from the admin (SSO settings) once SSO works."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("state", nargs="?", choices=["on", "off", "status"], default="status")

    def handle(self, *args, state: str, **options) -> None:
        if state != "status":
            set_local_login(state == "on", via="manage.py local_login")
        self.stdout.write(f"Local password login is {'on' if local_login_enabled() else 'off'}.")
