"""Setting SSO up entirely from the admin: providers from metadata (pasted or fetched), tests in words, keys, secrets."""
from __future__ import annotations

import datetime as dt
import http.server
import threading

import pytest
from django.db import connection

from portal.models import AuditEvent
from portal.sso.models import SSOProvider, SSOSettings
from tests.sso.conftest import SP_ENTITY_ID
from tests.sso.idp import TestIdP, make_key_and_cert

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/portal/ssoprovider/add/"
LIST_URL = "/admin/portal/ssoprovider/"


def form_data(**overrides) -> dict:
    """What the add form posts with its defaults (booleans unchecked are simply absent)."""
    data = {}
    for field in SSOProvider._meta.concrete_fields:
        if not field.editable or field.name in ("id", "created_at", "updated_at"):
            continue
        default = field.get_default()
        if isinstance(default, bool):
            if default:
                data[field.name] = "on"
        else:
            data[field.name] = default if default is not None else ""
    data.update({"name": "Example University", "slug": "uni", "enabled": "on", "sp_entity_id": SP_ENTITY_ID})
    for key, value in overrides.items():
        if value is False:
            data.pop(key, None)
        else:
            data[key] = "on" if value is True else value
    return data


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def metadata_server():
    """A loopback HTTP server standing in for the IdP's metadata URL."""
    documents: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            body = documents.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.documents = documents
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def messages_of(response) -> str:
    return " ".join(str(m) for m in response.context["messages"]) if response.context else ""


def test_admin_sets_up_shibboleth_from_pasted_metadata(admin_client, idp):
    assert admin_client.get(ADD_URL).status_code == 200
    response = admin_client.post(ADD_URL, form_data(idp_metadata_xml=idp.metadata()))
    assert response.status_code == 302, response.context["adminform"].form.errors

    provider = SSOProvider.objects.get(slug="uni")
    assert provider.idp_entity_id == idp.entity_id
    assert provider.idp_sso_url == idp.sso_url
    assert provider.idp_scopes == [{"value": "example.test", "regexp": False}]
    assert "BEGIN CERTIFICATE" in provider.sp_certificate and "PRIVATE KEY" in provider.sp_private_key

    page = admin_client.get(f"{LIST_URL}{provider.pk}/change/").content.decode()
    key_body = provider.sp_private_key.splitlines()[5]
    assert key_body not in page and "PRIVATE KEY" not in page
    assert "Stored: ••••••••" in page
    assert "http://testserver/accounts/saml/uni/metadata/" in page
    assert "http://testserver/accounts/saml/uni/acs/" in page
    assert "Test this configuration" in page

    with connection.cursor() as cursor:
        cursor.execute("SELECT sp_private_key FROM portal_ssoprovider WHERE id = %s", [provider.pk])
        assert cursor.fetchone()[0].startswith("fernet:")
    created = AuditEvent.objects.get(action="create", object_id=str(provider.pk))
    assert "PRIVATE KEY" not in str(created.changes)


def test_saving_again_keeps_the_stored_private_key(admin_client, provider):
    key = provider.sp_private_key
    data = form_data(idp_metadata_xml=provider.idp_metadata_xml, sp_certificate=provider.sp_certificate,
                     sp_private_key="", name="Renamed")
    data.pop("slug")
    response = admin_client.post(f"{LIST_URL}{provider.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    provider.refresh_from_db()
    assert provider.name == "Renamed" and provider.sp_private_key == key and provider.slug == "uni"


@pytest.mark.parametrize(
    "xml, entity_id, words",
    [
        ("<not-xml", "", "not well-formed XML"),
        ("<html><body>Login</body></html>", "", "not SAML metadata"),
        (None, "https://nobody.example.test/idp", "has no identity provider with entity id https://nobody.example.test/idp"),
    ],
)
def test_unusable_metadata_is_explained_in_the_form(admin_client, idp, xml, entity_id, words):
    response = admin_client.post(ADD_URL, form_data(idp_metadata_xml=xml or idp.metadata(), idp_entity_id=entity_id))
    assert response.status_code == 200
    assert words in response.content.decode()
    assert not SSOProvider.objects.exists()


def test_aggregate_metadata_needs_the_entity_id(admin_client, idp):
    other = TestIdP(entity_id="https://idp.other.test/idp/shibboleth", scope="other.test")
    aggregate = (
        '<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata">'
        + idp.metadata().split("?>")[-1] + other.metadata() + "</md:EntitiesDescriptor>"
    )
    response = admin_client.post(ADD_URL, form_data(idp_metadata_xml=aggregate))
    assert "describes 2 identity providers" in response.content.decode()
    response = admin_client.post(ADD_URL, form_data(idp_metadata_xml=aggregate, idp_entity_id=other.entity_id))
    assert response.status_code == 302
    assert SSOProvider.objects.get().idp_scopes == [{"value": "other.test", "regexp": False}]


def test_metadata_url_is_fetched_on_save_and_refreshed_by_the_action(admin_client, idp, metadata_server):
    metadata_server.documents["/idp.xml"] = idp.metadata().encode()
    url = f"{metadata_server.url}/idp.xml"
    response = admin_client.post(ADD_URL, form_data(idp_metadata_url=url))
    assert response.status_code == 302, response.context["adminform"].form.errors
    provider = SSOProvider.objects.get()
    assert provider.idp_entity_id == idp.entity_id and provider.idp_metadata_fetched_at

    # The IdP rolls its signing key; "Refresh metadata" picks the new certificate up.
    _, new_cert = make_key_and_cert("idp.example.test rolled")
    metadata_server.documents["/idp.xml"] = idp.metadata(certs=[new_cert]).encode()
    response = admin_client.post(f"{LIST_URL}{provider.pk}/refresh/", follow=True)
    assert "metadata refreshed" in messages_of(response)
    provider.refresh_from_db()
    assert provider.idp_signing_certs == ["".join(new_cert.splitlines()[1:-1])]
    assert AuditEvent.objects.filter(action="update", message="IdP metadata refreshed from its URL").exists()

    metadata_server.documents.pop("/idp.xml")
    response = admin_client.post(LIST_URL, {"action": "refresh_metadata", "_selected_action": [provider.pk]}, follow=True)
    assert "answered HTTP 404" in messages_of(response)


def test_test_action_passes_a_good_configuration(admin_client, provider):
    response = admin_client.get(f"{LIST_URL}{provider.pk}/test/", follow=True)
    text = messages_of(response)
    assert "Test of Example University: passed." in text
    assert "The SP private key matches the SP certificate." in text
    assert f"with entity id {SP_ENTITY_ID}" in text


def test_test_action_reports_problems_in_words(admin_client, make_provider, idp, settings):
    settings.DEBUG = False
    now = dt.datetime.now(dt.UTC)
    _, expired = make_key_and_cert("old-idp.example.test", not_before=now - dt.timedelta(days=400),
                                   not_after=now - dt.timedelta(days=1))
    provider = make_provider(metadata=idp.metadata(certs=[expired], valid_until=now + dt.timedelta(days=30)),
                             sp_entity_id="", attr_groups="", sign_authn_requests=True)
    provider.sp_private_key = make_key_and_cert("unrelated")[0]
    provider.save()
    response = admin_client.post(LIST_URL, {"action": "test_configuration", "_selected_action": [provider.pk]},
                                 follow=True)
    text = messages_of(response)
    assert "Test of Example University: FAILED." in text
    assert "IdP signing certificate 1 CN=old-idp.example.test expired on" in text
    assert "The SP private key does not belong to the SP certificate." in text
    assert "No SP entity id is set, so Corral uses its metadata URL http://testserver/accounts/saml/uni/metadata/" in text
    assert "(not https)" in text
    assert "every sign-in will remove the user's groups" in text


def test_generate_sp_key_replaces_the_pair_and_audits_without_the_key(admin_client, provider):
    old_cert, old_key = provider.sp_certificate, provider.sp_private_key
    response = admin_client.post(f"{LIST_URL}{provider.pk}/generate-key/", follow=True)
    assert "new SP key and certificate generated" in messages_of(response)
    provider.refresh_from_db()
    assert provider.sp_certificate != old_cert and provider.sp_private_key != old_key
    event = AuditEvent.objects.get(action="update", object_id=str(provider.pk))
    assert event.changes["sp_private_key"][1] == "(secret changed)"
    assert "PRIVATE KEY" not in str(event.changes)


def test_users_without_a_global_role_see_no_sso_configuration(client, make_user, provider):
    client.force_login(make_user("bob"))
    assert client.get(f"{LIST_URL}{provider.pk}/change/").status_code == 404
    assert client.get(f"{LIST_URL}{provider.pk}/test/").status_code == 404
    assert client.post(f"{LIST_URL}{provider.pk}/generate-key/").status_code == 404
    assert "Example University" not in client.get(LIST_URL).content.decode()
    assert client.get(ADD_URL).status_code == 403


def test_sso_settings_page_turns_local_login_off(admin_client, provider):
    response = admin_client.get("/admin/portal/ssosettings/")
    assert response.status_code == 302
    page = admin_client.get(response["Location"]).content.decode()
    assert "CORRAL_LOCAL_LOGIN_BREAK_GLASS" in page
    response = admin_client.post(response["Location"], {})  # checkbox cleared
    assert response.status_code == 302
    assert SSOSettings.load().local_login_enabled is False
    assert AuditEvent.objects.filter(action="update", changes__local_login_enabled=[True, False]).exists()


def test_allauths_own_app_table_is_not_offered(admin_client):
    assert admin_client.get("/admin/socialaccount/socialapp/").status_code == 404


def test_sso_settings_are_hidden_from_users_without_a_global_role(client, make_user):
    client.force_login(make_user("bob"))
    assert client.get("/admin/portal/ssosettings/").status_code == 200
    assert client.get("/admin/portal/ssosettings/1/change/").status_code == 404
    assert client.post("/admin/portal/ssosettings/1/change/", {}).status_code in (403, 404)
    assert SSOSettings.objects.filter(local_login_enabled=False).count() == 0
