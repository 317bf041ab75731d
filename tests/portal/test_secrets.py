"""Secrets are encrypted at rest, rotated on request, and never shown back in full."""
from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test import override_settings

from clusters.models import Cluster
from portal.crypto import SecretDecryptionError, mask, redact, rotate_secrets

KUBECONFIG = """apiVersion: v1
kind: Config
users:
- name: admin
  user:
    token: super-secret-token-value-0123456789
"""


def _raw_kubeconfig(pk) -> str:
    with connection.cursor() as cur:
        cur.execute("SELECT kubeconfig FROM clusters_cluster WHERE id = %s", [pk])
        return cur.fetchone()[0]


@pytest.mark.django_db
def test_raw_row_holds_no_plaintext():
    cluster = Cluster.objects.create(name="prod", kubeconfig=KUBECONFIG)
    raw = _raw_kubeconfig(cluster.pk)
    assert raw.startswith("fernet:")
    assert "super-secret-token" not in raw
    assert "apiVersion" not in raw
    assert Cluster.objects.get(pk=cluster.pk).kubeconfig == KUBECONFIG


@pytest.mark.django_db
def test_rotation_reencrypts_with_the_new_key_and_old_key_can_go(settings):
    old_keys = list(settings.ENCRYPTION_KEYS)
    cluster = Cluster.objects.create(name="prod", kubeconfig=KUBECONFIG)
    before = _raw_kubeconfig(cluster.pk)
    new_key = Fernet.generate_key().decode()
    with override_settings(ENCRYPTION_KEYS=[new_key, *old_keys]):
        assert rotate_secrets() == 1
        after = _raw_kubeconfig(cluster.pk)
        assert after != before
    with override_settings(ENCRYPTION_KEYS=[new_key]):
        assert Cluster.objects.get(pk=cluster.pk).kubeconfig == KUBECONFIG
    with override_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()]):
        with pytest.raises(SecretDecryptionError, match="cannot be decrypted"):
            Cluster.objects.get(pk=cluster.pk)


def test_mask_shows_at_most_four_characters():
    assert mask("") == ""
    assert "short" not in mask("short")
    masked = mask("abcdefghijklmnopqrstuvwxyz")
    assert masked.endswith("wxyz") and "abcdef" not in masked


def test_redaction_of_credentials_in_free_text():
    text = redact("calling with Authorization: Bearer abcdef0123456789 and token: s3cr3t-v4lue")
    assert "abcdef0123456789" not in text and "s3cr3t-v4lue" not in text


def test_log_records_are_redacted(caplog):
    from portal.crypto import RedactSecretsFilter

    logger = logging.getLogger("corral.test")
    logger.addFilter(RedactSecretsFilter())
    with caplog.at_level(logging.INFO, logger="corral.test"):
        logger.info("kubeconfig says token: %s", "abcd-very-secret-1234")
    assert "abcd-very-secret-1234" not in caplog.text


@pytest.mark.django_db
def test_admin_never_renders_the_secret(client, admin_user):
    cluster = Cluster.objects.create(name="prod", kubeconfig=KUBECONFIG)
    client.force_login(admin_user)
    page = client.get(f"/admin/clusters/cluster/{cluster.pk}/change/").content.decode()
    assert "super-secret-token" not in page
    assert "Stored:" in page


@pytest.mark.django_db
def test_admin_blank_secret_keeps_the_stored_one(client, admin_user):
    cluster = Cluster.objects.create(name="prod", kubeconfig=KUBECONFIG, kind="imported")
    client.force_login(admin_user)
    response = client.post(
        f"/admin/clusters/cluster/{cluster.pk}/change/",
        {"name": "prod", "description": "renamed", "kind": "imported", "state": "active",
         "state_reason": "", "kubernetes_version": "", "kubeconfig": "",
         "projects-TOTAL_FORMS": "0", "projects-INITIAL_FORMS": "0", "nodes-TOTAL_FORMS": "0", "nodes-INITIAL_FORMS": "0"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    cluster.refresh_from_db()
    assert cluster.description == "renamed"
    assert cluster.kubeconfig == KUBECONFIG
