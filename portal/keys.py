"""Where the process gets its signing and encryption keys.

Development keeps generated keys in the data folder so a restart does not lock
secrets away; production refuses to start without keys from the environment.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured


def _keyfile(data_dir: Path) -> Path:
    return data_dir / "keys.json"


def load_keys(data_dir: Path, production: bool) -> tuple[str, list[str]]:
    """Return (SECRET_KEY, encryption keys newest first)."""
    secret_key = os.environ.get("SECRET_KEY", "")
    enc = [k.strip() for k in os.environ.get("CORRAL_ENCRYPTION_KEYS", "").split(",") if k.strip()]
    if production:
        missing = [n for n, v in (("SECRET_KEY", secret_key), ("CORRAL_ENCRYPTION_KEYS", enc)) if not v]
        if missing:
            raise ImproperlyConfigured(
                "Corral runs in production mode (CORRAL_ENV=production) and needs "
                + " and ".join(missing)
                + " in the environment. Generate an encryption key with: "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            )
        return secret_key, enc
    if secret_key and enc:
        return secret_key, enc
    path = _keyfile(data_dir)
    stored: dict = {}
    if path.exists():
        stored = json.loads(path.read_text())
    changed = False
    if not stored.get("secret_key"):
        stored["secret_key"] = secrets.token_urlsafe(50)
        changed = True
    if not stored.get("encryption_keys"):
        stored["encryption_keys"] = [Fernet.generate_key().decode()]
        changed = True
    if changed:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=2))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return secret_key or stored["secret_key"], enc or stored["encryption_keys"]
