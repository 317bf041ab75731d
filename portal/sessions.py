"""Database sessions that ignore session cookies Django itself could never have issued."""
from __future__ import annotations

import re

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

# Django's session keys are 32 characters of [a-z0-9]; anything else (a NUL byte, say) would only
# reach the database to fail there, turning a forged cookie into a server error on every page.
SESSION_KEY = re.compile(r"[a-z0-9]{32}")


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and SESSION_KEY.fullmatch(key) is not None
