"""``/v3/sso-providers/``: configuration over the API, secrets write-only, global-only visibility."""
from __future__ import annotations

import pytest

from portal.models import AuditEvent
from portal.sso.models import SSOProvider
from tests.sso.conftest import SP_ENTITY_ID

pytestmark = pytest.mark.django_db
URL = "/v3/sso-providers/"


def test_admin_creates_a_provider_from_metadata(admin_api, idp):
    response = admin_api.post(URL, {"name": "Example University", "slug": "uni", "enabled": True,
                                    "sp_entity_id": SP_ENTITY_ID, "idp_metadata_xml": idp.metadata()}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["idp_entity_id"] == idp.entity_id and body["idp_sso_url"] == idp.sso_url
    assert body["urls"]["acs"] == "http://testserver/accounts/saml/uni/acs/"
    assert body["urls"]["metadata"] == "http://testserver/accounts/saml/uni/metadata/"
    assert body["sp_private_key"].startswith("••••") and "PRIVATE KEY" not in response.content.decode()
    assert "BEGIN CERTIFICATE" in body["sp_certificate"]
    provider = SSOProvider.objects.get()
    assert "PRIVATE KEY" in provider.sp_private_key
    assert AuditEvent.objects.filter(action="create", object_id=str(provider.pk)).exists()


def test_bad_metadata_is_a_400_in_words(admin_api, provider):
    response = admin_api.patch(f"{URL}{provider.pk}/", {"idp_metadata_xml": "<oops"}, format="json")
    assert response.status_code == 400
    assert "not well-formed XML" in response.content.decode()


def test_slug_cannot_change(admin_api, provider):
    response = admin_api.patch(f"{URL}{provider.pk}/", {"slug": "other"}, format="json")
    assert response.status_code == 400 and "cannot change" in response.content.decode()


def test_blank_private_key_keeps_the_stored_one(admin_api, provider):
    key = provider.sp_private_key
    response = admin_api.patch(f"{URL}{provider.pk}/", {"sp_private_key": "", "name": "Renamed"}, format="json")
    assert response.status_code == 200, response.json()
    provider.refresh_from_db()
    assert provider.sp_private_key == key and provider.name == "Renamed"


def test_test_action_returns_findings(admin_api, provider):
    response = admin_api.post(f"{URL}{provider.pk}/test/")
    assert response.status_code == 200
    body = response.json()
    assert body["passed"] is True
    assert any("SP private key matches" in f["text"] for f in body["findings"])


def test_generate_sp_key_over_the_api(admin_api, provider):
    old = provider.sp_certificate
    response = admin_api.post(f"{URL}{provider.pk}/generate-sp-key/")
    assert response.status_code == 200 and response.json()["sp_certificate"] != old


def test_other_users_see_nothing_and_change_nothing(api, make_user, provider, idp):
    api.force_login(make_user("bob"))
    assert api.get(URL).json()["results"] == []
    assert api.get(f"{URL}{provider.pk}/").status_code == 404
    assert api.post(f"{URL}{provider.pk}/test/").status_code == 404
    assert api.patch(f"{URL}{provider.pk}/", {"enabled": False}, format="json").status_code == 404
    assert api.post(URL, {"name": "x", "slug": "x", "idp_metadata_xml": idp.metadata()}, format="json").status_code == 403
