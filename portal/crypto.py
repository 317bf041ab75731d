"""Secrets at rest: an encrypted model field, masking, key rotation and log redaction.

Values are stored as ``fernet:<token>`` using MultiFernet, so a key list ordered
newest first can decrypt values written under any older key while new writes use
the newest one. ``rotate_secrets`` re-encrypts every stored value under the newest key.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Cast

PREFIX = "fernet:"
MASK = "••••••••"


class SecretDecryptionError(Exception):
    """A stored secret cannot be read with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise SecretDecryptionError("value is not an encrypted secret")
    try:
        return fernet().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptionError(
            "stored secret cannot be decrypted with the configured keys (CORRAL_ENCRYPTION_KEYS)"
        ) from exc


def mask(value: str | None) -> str:
    """What admin, API and logs show instead of a secret: never more than its last 4 characters."""
    if not value:
        return ""
    if len(value) < 16:
        return MASK
    return f"{MASK}{value[-4:]}"


class Ciphertext(str):
    """An already encrypted value, written to the column unchanged (used by key rotation)."""


class EncryptedTextField(models.TextField):
    """A text field whose database column only ever holds ciphertext."""

    description = "Text encrypted at rest"

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def to_python(self, value):
        if isinstance(value, str) and value.startswith(PREFIX):
            return decrypt(value)
        return value

    def get_prep_value(self, value):
        if isinstance(value, Ciphertext):
            return str(value)
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))

    def formfield(self, **kwargs):
        from portal.forms import SecretFormField

        return super().formfield(**{"form_class": SecretFormField, **kwargs})


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    return [
        (model, field.attname)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


def rotate_secrets() -> int:
    """Re-encrypt every stored secret with the newest key; returns how many values changed."""
    count = 0
    f = fernet()
    for model, attname in encrypted_fields():
        with transaction.atomic():
            # Cast to a plain text column so the ciphertext is read as it is stored.
            rows = model._base_manager.annotate(_stored=Cast(attname, output_field=models.TextField()))
            for pk, stored in rows.values_list("pk", "_stored").iterator():
                if not stored or not stored.startswith(PREFIX):
                    continue
                rotated = PREFIX + f.rotate(stored[len(PREFIX):].encode()).decode()
                if rotated != stored:
                    model._base_manager.filter(pk=pk).update(**{attname: Ciphertext(rotated)})
                    count += 1
    return count


_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)((?:token|password|passwd|secret|secret_key|access_key|client-key-data|"
        r"client-certificate-data|webhook_url)\"?\s*[:=]\s*\"?)[^\s\",}]{4,}"
    ),
    re.compile(r"fernet:[A-Za-z0-9_=-]{20,}"),
]


def redact(text: str) -> str:
    """Hide anything shaped like a credential in free text (log lines, error messages)."""
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break the caller
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
