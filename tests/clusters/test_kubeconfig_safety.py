"""Kubeconfigs are taken only with inline credentials, every field type-checked, and TLS checked unless an
admin explicitly (and audited) says otherwise; a refused kubeconfig contacts nothing."""
from __future__ import annotations

import base64
import copy
import datetime as dt

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clusters import inventory, kube
from clusters.forms import ClusterForm
from clusters.models import Cluster, Node
from portal.models import AuditEvent

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")]

BASE = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9/k8s"}}],
    "users": [{"name": "u", "user": {"token": "secret-token"}}],
    "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "ctx",
}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _client_pair(days: int = 30) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ops")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=2))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return _b64(cert.public_bytes(serialization.Encoding.PEM)), _b64(key_pem)


def _doc(**changes) -> dict:
    """BASE with changes at dotted paths ("users.0.user.token"); the value DELETE removes the key."""
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return doc


DELETE = object()


@pytest.fixture
def no_contact(monkeypatch):
    """Fail loudly if anything tries to reach a cluster."""
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was contacted")

    monkeypatch.setattr(kube, "api_client", refuse)


# ------------------------------------------------------------------------------------ file references

@pytest.mark.parametrize("where,field,entry", [
    ("users.0.user", "tokenFile", "User 'u'"),
    ("users.0.user", "client-certificate", "User 'u'"),
    ("users.0.user", "client-key", "User 'u'"),
    ("clusters.0.cluster", "certificate-authority", "Cluster 'c'"),
])
def test_file_references_are_refused_naming_field_and_entry(admin_api, tmp_path, no_contact, where, field, entry):
    secret = tmp_path / "secret"
    secret.write_text("read-me-and-send-me")
    doc = copy.deepcopy(BASE)
    node = doc
    for part in where.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    node[field] = str(secret)
    with pytest.raises(kube.KubeconfigError) as exc:
        kube.parse_kubeconfig(yaml.safe_dump(doc))
    assert field in str(exc.value) and entry in str(exc.value) and "reads no files" in str(exc.value)

    before = AuditEvent.objects.count()
    response = admin_api.post("/v3/clusters/", {"name": "files", "kubeconfig": yaml.safe_dump(doc)}, format="json")
    assert response.status_code == 400
    message = response.json()["error"]["fields"]["kubeconfig"][0]
    assert field in message and entry in message
    assert not Cluster.objects.exists() and AuditEvent.objects.count() == before


def test_file_reference_in_an_unused_entry_is_refused_too():
    doc = _doc()
    doc["users"].append({"name": "other", "user": {"tokenFile": "/etc/shadow"}})
    with pytest.raises(kube.KubeconfigError, match="User 'other'.*tokenFile"):
        kube.parse_kubeconfig(yaml.safe_dump(doc))


@pytest.mark.parametrize("field", ["exec", "auth-provider"])
def test_credential_plugins_stay_refused(field):
    doc = _doc(**{f"users.0.user.{field}": {"command": "/bin/sh"}})
    with pytest.raises(kube.KubeconfigError, match="credential plugin"):
        kube.parse_kubeconfig(yaml.safe_dump(doc))


# ----------------------------------------------------------------------------------------- wrong types

WRONG = [
    ({"current-context": {"a": 1}}, "current-context must be the name of a context"),
    ({"clusters.0.cluster": True}, "cluster of cluster 'c' in the kubeconfig must be a mapping, not true/false"),
    ({"users.0.user": ["token"]}, "user of user 'u' in the kubeconfig must be a mapping, not a list"),
    ({"contexts.0.context": "c"}, "context of context 'ctx' in the kubeconfig must be a mapping, not a text"),
    ({"clusters": {"name": "c"}}, "clusters must be a list"),
    ({"users": "u"}, "users must be a list"),
    ({"contexts": []}, "has no contexts"),
    ({"clusters.0": "c"}, "Entry 1 of the kubeconfig's clusters must be a mapping"),
    ({"clusters.0.name": 7}, "Entry 1 of the kubeconfig's clusters has no name"),
    ({"users.0.name": ["u"]}, "Entry 1 of the kubeconfig's users has no name"),
    ({"contexts.0.context.cluster": ["c"]}, "must name a cluster (a text), not a list"),
    ({"contexts.0.context.user": {"u": 1}}, "must name a user (a text), not a mapping"),
    ({"clusters.0.cluster.server": 443}, "server that is a number; it must be a text"),
    ({"clusters.0.cluster.server": "ftp://example.com"}, "not an https:// or http:// URL"),
    ({"clusters.0.cluster.server": "https://"}, "not an https:// or http:// URL"),
    ({"clusters.0.cluster.server": "https://[::1"}, "not an https:// or http:// URL"),
    ({"clusters.0.cluster.server": "https://h:99999999"}, "not an https:// or http:// URL"),
    ({"clusters.0.cluster.server": "https://" + "a" * 400}, "longer than 300 characters"),
    ({"clusters.0.cluster.server": DELETE}, "has no server URL"),
    ({"users.0.user.token": ["t"]}, "token that is a list; it must be a text"),
    ({"users.0.user.token": 12345}, "token that is a number; it must be a text"),
    ({"clusters.0.cluster.certificate-authority-data": "not base64!"}, "certificate-authority-data that is not valid base64"),
    ({"clusters.0.cluster.certificate-authority-data": _b64(b"hello")}, "not a PEM certificate"),
    ({"clusters.0.cluster.certificate-authority-data": 5}, "certificate-authority-data that is a number"),
    ({"clusters.0.cluster.insecure-skip-tls-verify": "yes"}, "insecure-skip-tls-verify that is a text"),
    ({"users.0.user.client-certificate-data": _b64(b"x"), "users.0.user.client-key-data": _b64(b"y")},
     "client-certificate-data that is not a PEM certificate"),
    ({"users.0.user.client-certificate-data": "###"}, "client-certificate-data that is not valid base64"),
    ({"users.0.user.username": "admin"}, "has a username but no password"),
    ({"users.0.user.token": DELETE}, "has no credentials"),
    ({"current-context": "elsewhere"}, "current-context 'elsewhere' is not among its contexts"),
    ({"contexts.0.context.cluster": "nope"}, "names cluster 'nope', which the kubeconfig lacks"),
]


@pytest.mark.parametrize("changes,words", WRONG)
def test_wrong_types_and_values_are_a_sentence(no_contact, changes, words):
    with pytest.raises(kube.KubeconfigError) as exc:
        kube.parse_kubeconfig(yaml.safe_dump(_doc(**changes)))
    assert words in str(exc.value)


def test_duplicate_names_are_refused():
    doc = _doc()
    doc["clusters"].append(copy.deepcopy(doc["clusters"][0]))
    with pytest.raises(kube.KubeconfigError, match="two entries named 'c'"):
        kube.parse_kubeconfig(yaml.safe_dump(doc))


@pytest.mark.parametrize("text,words", [
    ("- a\n- b\n", "must be a YAML mapping"),
    ("null", "must be a YAML mapping"),
    ("x" * (300 * 1024), "at most 256 KiB"),
    ("a: " + "[" * 5000 + "]" * 5000, "nested deeper than 20 levels"),
    ("\n".join("  " * i + f"k{i}:" for i in range(300)) + " x", "nested deeper than 20 levels"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8)),
     "expands to more than"),
    ("a: &a [*a]", "refers to a node that contains it"),
    ("clusters: [", "not valid YAML at line 1"),
    ("clusters: 2020-13-45", "a value cannot be read"),
])
def test_hostile_texts_are_refused_quickly(no_contact, text, words):
    import time

    started = time.monotonic()
    with pytest.raises(kube.KubeconfigError) as exc:
        kube.parse_kubeconfig(text)
    assert words in str(exc.value)
    assert time.monotonic() - started < 0.5


def test_inline_client_certificate_is_accepted_and_checked():
    cert, key = _client_pair()
    doc = _doc(**{"users.0.user.token": DELETE, "users.0.user.client-certificate-data": cert,
                  "users.0.user.client-key-data": key})
    assert kube.parse_kubeconfig(yaml.safe_dump(doc))["current-context"] == "ctx"
    del doc["users"][0]["user"]["client-key-data"]
    with pytest.raises(kube.KubeconfigError, match="add client-key-data"):
        kube.parse_kubeconfig(yaml.safe_dump(doc))
    doc["users"][0]["user"]["client-key-data"] = cert
    with pytest.raises(kube.KubeconfigError, match="client-key-data that is not a PEM private key"):
        kube.parse_kubeconfig(yaml.safe_dump(doc))


def test_wrong_types_over_the_api_answer_400_and_contact_nothing(admin_api, no_contact):
    for changes, words in WRONG:
        response = admin_api.post("/v3/clusters/", {"name": "typed", "kubeconfig": yaml.safe_dump(_doc(**changes))},
                                  format="json")
        assert response.status_code == 400, (changes, response.content)
        assert words in response.json()["error"]["fields"]["kubeconfig"][0]
    assert not Cluster.objects.exists()


# ------------------------------------------------------------------------------ insecure-skip-tls-verify

def _insecure(fleet, name: str = "rke-a") -> str:
    doc = yaml.safe_load(fleet.kubeconfig(name))
    cluster = doc["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["insecure-skip-tls-verify"] = True
    return yaml.safe_dump(doc)


def test_insecure_is_refused_in_words_without_the_option(no_contact):
    text = yaml.safe_dump(_doc(**{"clusters.0.cluster.insecure-skip-tls-verify": True}))
    with pytest.raises(kube.KubeconfigError, match="the server's certificate would not be checked"):
        kube.parse_kubeconfig(text)
    assert kube.parse_kubeconfig(text, allow_insecure=True)
    assert kube.parse_kubeconfig(yaml.safe_dump(_doc(**{"clusters.0.cluster.insecure-skip-tls-verify": False})))


def test_non_admin_cannot_skip_tls_verification(api, make_user, fleet, no_contact):
    api.force_login(make_user("ops"))
    before = AuditEvent.objects.count()
    for body, field, words in [
        ({"allow_insecure_tls": True}, "allow_insecure_tls", "Only admins may skip TLS verification"),
        ({}, "kubeconfig", "would not be checked"),
    ]:
        response = api.post("/v3/clusters/", {"name": "rke-a", "kubeconfig": _insecure(fleet), **body}, format="json")
        assert response.status_code == 400, response.content
        assert words in response.json()["error"]["fields"][field][0]
    assert not Cluster.objects.exists() and AuditEvent.objects.count() == before


def test_admin_without_the_option_is_refused(admin_api, fleet, no_contact):
    response = admin_api.post("/v3/clusters/", {"name": "rke-a", "kubeconfig": _insecure(fleet)}, format="json")
    assert response.status_code == 400
    assert "would not be checked" in response.json()["error"]["fields"]["kubeconfig"][0]
    assert not Cluster.objects.exists()


def test_admin_with_the_option_imports_audited_and_syncs(admin_api, admin_user, fleet):
    response = admin_api.post("/v3/clusters/", {"name": "rke-a", "kubeconfig": _insecure(fleet),
                                                "allow_insecure_tls": True}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["insecure_tls"] is True and "allow_insecure_tls" not in response.json()
    cluster = Cluster.objects.get()
    assert cluster.insecure_tls and cluster.nodes.count() == 4
    event = AuditEvent.objects.get(object_id=str(cluster.pk), message__startswith="TLS verification is off")
    assert event.user == admin_user and event.changes == {"insecure_tls": [False, True]}

    report = inventory.sync_clusters([cluster.pk])  # later syncs accept the kubeconfig the admin allowed
    cluster.refresh_from_db()
    assert report.reachable == 1 and cluster.state == "active"

    Cluster.objects.filter(pk=cluster.pk).update(insecure_tls=False)  # without the flag, a sync refuses it
    inventory.sync_clusters([cluster.pk])
    cluster.refresh_from_db()
    assert cluster.state == "error" and "would not be checked" in cluster.state_reason


def test_the_option_is_ignored_by_a_secure_kubeconfig(admin_api, fleet):
    response = admin_api.post("/v3/clusters/", {"name": "k3s-a", "kubeconfig": fleet.kubeconfig("k3s-a"),
                                                "allow_insecure_tls": True}, format="json")
    assert response.status_code == 201, response.content
    assert Cluster.objects.get().insecure_tls is False
    assert not AuditEvent.objects.filter(message__startswith="TLS verification is off").exists()


def test_import_cluster_refuses_the_option_for_non_admins(make_user, fleet, no_contact):
    with pytest.raises(kube.KubeconfigError, match="Only admins"):
        inventory.import_cluster(name="rke-a", kubeconfig=_insecure(fleet), user=make_user("ops"),
                                 allow_insecure_tls=True)
    assert not Cluster.objects.exists() and not Node.objects.exists()


def test_admin_form_checkbox(admin_user, make_user, fleet):
    data = {"name": "rke-a", "description": "", "kubeconfig": _insecure(fleet)}
    label = ClusterForm.base_fields["allow_insecure_tls"].label
    assert label == "Skip TLS verification (admins only; audited)"

    form = ClusterForm(data={**data, "allow_insecure_tls": "on"})
    form.user = make_user("ops")
    assert not form.is_valid()
    assert "Only admins may skip TLS verification" in form.errors["allow_insecure_tls"][0]

    form = ClusterForm(data=data)
    form.user = admin_user
    assert not form.is_valid() and "would not be checked" in form.errors["kubeconfig"][0]

    form = ClusterForm(data={**data, "allow_insecure_tls": "on"})
    form.user = admin_user
    assert form.is_valid(), form.errors
    assert form.cluster_view.insecure_tls and form.instance.insecure_tls
    cluster = inventory.import_cluster(name="rke-a", kubeconfig=data["kubeconfig"], user=admin_user,
                                       view=form.cluster_view)
    assert cluster.insecure_tls
    assert AuditEvent.objects.filter(object_id=str(cluster.pk), message__startswith="TLS verification is off").exists()
