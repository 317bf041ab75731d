"""Production mode refuses to start without keys; development keeps generated keys."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def _django_setup(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY[:6])"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )


def test_production_without_keys_fails_with_a_clear_message(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "portal.settings", "CORRAL_ENV": "production",
           "CORRAL_DATA_DIR": str(tmp_path)}
    result = _django_setup(env)
    assert result.returncode != 0
    assert "needs SECRET_KEY and CORRAL_ENCRYPTION_KEYS" in result.stderr
    assert not (tmp_path / "keys.json").exists()


def test_development_generates_keys_once_and_keeps_them(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "portal.settings", "CORRAL_DATA_DIR": str(tmp_path)}
    first = _django_setup(env)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    second = _django_setup(env)
    assert first.stdout == second.stdout
