from django.core.management.base import BaseCommand

from portal.crypto import rotate_secrets


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the newest key in CORRAL_ENCRYPTION_KEYS."

    def handle(self, *args, **options) -> None:
        count = rotate_secrets()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret value(s) with the newest key."))
