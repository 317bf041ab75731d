"""The API's contract: authentication, deny by default, one error shape, a valid OpenAPI document."""
from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate

from portal.models import ApiToken, Job

pytestmark = pytest.mark.django_db


def test_unauthenticated_calls_are_refused(api):
    for url in ["/v3/", "/v3/jobs/", "/v3/tokens/"]:
        response = api.get(url)
        assert response.status_code == 401, url
        body = response.json()
        assert body["error"]["status"] == 401
        assert body["error"]["code"] == "not_authenticated"
        assert "Bearer" in response["WWW-Authenticate"]


def test_bad_token_is_refused_with_a_clear_message(api):
    response = api.get("/v3/jobs/", HTTP_AUTHORIZATION="Bearer corral_nope")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid or expired API token."


def test_token_is_shown_once_stored_hashed_and_works(api, make_user):
    user = make_user("alice")
    api.force_login(user)
    created = api.post("/v3/tokens/", {"description": "ci"}, format="json")
    assert created.status_code == 201, created.content
    raw = created.json()["token"]
    assert raw.startswith("corral_")
    assert ApiToken.objects.get().key_hash != raw
    assert api.get("/v3/tokens/").json()["results"][0]["token"] is None
    api.logout()
    response = api.get("/v3/tokens/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_schema_is_a_valid_openapi3_document(api):
    response = api.get("/v3/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")
    validate(document)
    assert "/v3/jobs/" in document["paths"]
    assert "/v3/jobs/{id}/cancel/" in document["paths"]


def test_docs_page_is_served(admin_api):
    response = admin_api.get("/v3/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_validation_errors_share_one_shape(admin_api):
    response = admin_api.post("/v3/jobs/diagnose/", {"steps": 0}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "steps" in error["fields"]
    assert error["message"].startswith("steps:")


def test_not_found_shape(admin_api):
    response = admin_api.get("/v3/jobs/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404
    assert response.json() == {"error": {"status": 404, "code": "not_found", "message": "Not found."}}


def test_jobs_are_paginated_and_filterable(admin_api, admin_user):
    for i in range(5):
        Job.objects.create(kind="portal.diagnose", created_by=admin_user, status="succeeded" if i % 2 else "failed")
    page = admin_api.get("/v3/jobs/?page_size=2").json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"]
    failed = admin_api.get("/v3/jobs/?status=failed").json()
    assert failed["count"] == 3


def test_a_user_sees_only_jobs_they_may_see(api, make_user, admin_user):
    alice, bob = make_user("alice"), make_user("bob")
    Job.objects.create(kind="portal.diagnose", created_by=alice)
    bobs = Job.objects.create(kind="portal.diagnose", created_by=bob)
    api.force_login(alice)
    assert api.get("/v3/jobs/").json()["count"] == 1
    assert api.get(f"/v3/jobs/{bobs.pk}/").status_code == 404
    assert api.post(f"/v3/jobs/{bobs.pk}/cancel/").status_code == 404


def test_only_admins_run_diagnostics(api, make_user):
    api.force_login(make_user("alice"))
    response = api.post("/v3/jobs/diagnose/", {}, format="json")
    assert response.status_code == 403
    assert Job.objects.count() == 0
