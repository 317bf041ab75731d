"""Hostile bodies to every write endpoint of the API, as an admin (so no refusal hides a crash).

Every answer must be a 4xx with the JSON error body, never a 500 or an HTML page, and nothing may be
saved. Endpoints come from the router, so a new one is fuzzed without anyone listing it here.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field

import pytest
import yaml
from django.apps import apps
from django.db import connection
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rest_framework import serializers as drf
from rest_framework.test import APIClient

from clusters import config as cluster_config
from clusters import kube
from clusters.api.serializers import ConfigWriteSerializer, UpgradeRequestSerializer
from clusters.forms import ConfigYAMLForm
from clusters.models import Cluster, ClusterConfigVersion, Project
from portal.api.urls import router

pytestmark = pytest.mark.django_db

FUZZ = settings(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])

# Apps whose rows a write could add or change; counted before and after every request.
WATCHED_APPS = {"auth", "clusters", "rbac", "portal", "sso", "catalog", "scans", "backups"}


@dataclass
class Endpoint:
    method: str
    url: str
    serializer: type[drf.Serializer] | None = None
    parses: bool = True  # reaches the body parser (an existing object, a method the view has)


@dataclass
class World:
    client: APIClient
    cluster: Cluster
    endpoints: list[Endpoint]
    details: list = field(default_factory=list)  # (model, pk) of every object a detail route points at
    tables: list[str] = field(default_factory=list)

    def state(self) -> tuple:
        """Row counts of every watched table (one query) and the full rows of the objects written to."""
        quote = connection.ops.quote_name
        sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {quote(t)})" for t in self.tables)
        with connection.cursor() as cursor:
            cursor.execute(sql)
            counts = cursor.fetchone()
        rows = [list(model._default_manager.filter(pk=pk).values()) for model, pk in self.details]
        return counts, rows

    def send(self, endpoint: Endpoint, body: bytes, content_type: str = "application/json"):
        return self.client.generic(endpoint.method, endpoint.url, body, content_type=content_type)


@pytest.fixture
def world(admin_user, monkeypatch):
    from portal.sso.models import SSOProvider
    from rbac.models import ClusterRoleBinding, Group, ProjectRoleBinding, RoleTemplate

    def contacted(*args, **kwargs):
        raise AssertionError("a hostile body reached a cluster")  # becomes a 500, which fails the test

    monkeypatch.setattr(kube, "api_client", contacted)
    cluster = Cluster.objects.create(name="fuzz", kind="rke", kubernetes_version="v1.15.11", kubeconfig="x" * 20,
                                     state="active")
    cluster_config.save_config(cluster, cluster_config.initial_document(cluster), user=admin_user, audit_it=False)
    project = Project.objects.create(cluster=cluster, name="fuzz")
    group = Group.objects.create(name="fuzz")
    ClusterRoleBinding.objects.create(cluster=cluster, role=RoleTemplate.objects.filter(context="cluster").first(),
                                      group=group)
    ProjectRoleBinding.objects.create(project=project, role=RoleTemplate.objects.filter(context="project").first(),
                                      group=group)
    SSOProvider.objects.create(name="Fuzz IdP", slug="fuzz-idp")

    endpoints: list[Endpoint] = []
    details = []
    for prefix, viewset, _basename in router.registry:
        queryset = getattr(viewset, "queryset", None)
        serializer = getattr(viewset, "serializer_class", None)
        obj = queryset.model._default_manager.order_by("pk").first() if queryset is not None else None
        endpoints.append(Endpoint("POST", f"/v3/{prefix}/", serializer, parses=hasattr(viewset, "create")))
        detail = f"/v3/{prefix}/{obj.pk if obj is not None else 999999}/"
        updatable = hasattr(viewset, "update") and obj is not None
        endpoints += [Endpoint("PUT", detail, serializer, updatable), Endpoint("PATCH", detail, serializer, updatable)]
        if obj is not None:
            details.append((queryset.model, obj.pk))
    endpoints += [
        Endpoint("PUT", f"/v3/clusters/{cluster.pk}/config/", ConfigWriteSerializer),
        Endpoint("POST", f"/v3/clusters/{cluster.pk}/upgrade/", UpgradeRequestSerializer),
    ]
    details.append((Cluster, cluster.pk))
    tables = sorted({m._meta.db_table for m in apps.get_models()
                     if m._meta.app_label in WATCHED_APPS and m._meta.managed and not m._meta.proxy})
    client = APIClient()
    client.force_login(admin_user)
    return World(client, cluster, endpoints, details, tables)


def check_refused(response, world: World, before: tuple, *, status: int | None = None) -> dict:
    """A 4xx JSON error body, and the database as it was."""
    content = response.content[:400]
    assert 400 <= response.status_code < 500, (response.status_code, content)
    if status is not None:
        assert response.status_code == status, content
    assert response["Content-Type"].startswith("application/json"), (response["Content-Type"], content)
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert error["status"] == response.status_code and error["code"] and error["message"], body
    assert world.state() == before, "a refused request changed the database"
    return error


def is_json_object(body: bytes) -> bool:
    try:
        return isinstance(json.loads(body.decode("utf-8")), dict)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------- strategies

JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4)), max_leaves=12)
NOT_A_STRING = st.one_of(st.booleans(), st.lists(JSON_SCALARS, max_size=3),
                         st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3))
# Strings DRF takes but the database could not store, or that exceed every limit.
HOSTILE_STRINGS = st.sampled_from(["a\x00b", "\ud800", "x" * 70_000, "\u202e" * 400, "../../etc/passwd", "%s%n"])


def surely_wrong(f: drf.Field) -> st.SearchStrategy:
    """Values the field cannot accept, whatever DRF coerces (it takes numbers for text, "1" for true)."""
    if isinstance(f, drf.BooleanField):
        return st.one_of(st.sampled_from(["maybe", 2, -1, 0.5]), st.lists(st.booleans(), min_size=1, max_size=2),
                         st.dictionaries(st.text(max_size=3), st.booleans(), max_size=2))
    if isinstance(f, drf.ManyRelatedField):
        return st.sampled_from(["x", 5, {"id": 1}, [{"id": 1}], [-1], ["x"], [10**30]])
    if isinstance(f, drf.RelatedField):
        return st.sampled_from([[], {}, "x", -1, 10**30, [1], {"pk": 1}, True])
    if isinstance(f, (drf.IntegerField, drf.FloatField, drf.DecimalField)):
        return st.sampled_from([[], {}, "x", True, "1e999"])
    if isinstance(f, (drf.DateTimeField, drf.DateField)):
        return st.sampled_from([[], {}, "not a date", True, "2020-13-45T99:99:99Z", 10**12])
    if isinstance(f, drf.DictField):
        return st.sampled_from([[], "x", 5, True, [["a", 1]]])
    if isinstance(f, drf.ListField):
        return st.sampled_from([{}, "x", 5, True, {"a": [1]}])
    if isinstance(f, drf.JSONField):
        return st.nothing()
    if isinstance(f, drf.ChoiceField):
        return st.one_of(st.sampled_from(["no-such-choice", [], {}, True]), st.lists(st.text(max_size=3), min_size=1))
    if isinstance(f, drf.CharField):  # also Slug/URL/Email/Secret fields: DRF refuses bools, lists, mappings
        return NOT_A_STRING
    return st.sampled_from([[{"nested": [1]}], {"a": {"b": {}}}])


def maybe_wrong(f: drf.Field) -> st.SearchStrategy:
    """Anything hostile; may happen to be acceptable, since another field in the body is surely wrong."""
    return st.one_of(surely_wrong(f), HOSTILE_STRINGS, JSON_VALUES)


def writable(serializer_class) -> dict[str, drf.Field]:
    fields = serializer_class(context={}).fields
    return {name: f for name, f in fields.items() if not f.read_only}


# --------------------------------------------------------------------------------------------- tests

@settings(FUZZ, max_examples=160)
@given(data=st.data())
def test_random_bodies_are_refused(world, data):
    endpoint = data.draw(st.sampled_from(world.endpoints), label="endpoint")
    content_type = data.draw(st.sampled_from(["application/json", "application/json; charset=latin-1",
                                              "application/yaml", "text/plain", "application/xml",
                                              "application/json; charset=rot13"]), label="content type")
    body = data.draw(st.one_of(
        st.binary(min_size=1, max_size=2000),
        st.text(min_size=1, max_size=500).map(str.encode),
        JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"null", b"[]", b'""', b"0", b"-", b"~", b"---", b"!!python/object:os.system x",
                         b"\xef\xbb\xbf[]", b"NaN", b"[Infinity]", b"1e999", b"9" * 5000]),
    ), label="body")
    assume(not is_json_object(body))
    before = world.state()
    check_refused(world.send(endpoint, body, content_type), world, before)


def _deep_json(depth: int, shape: str) -> str:
    if shape == "list":
        return "[" * depth + "]" * depth
    if shape == "dict":
        return '{"a":' * depth + "1" + "}" * depth
    return '[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2)


def _deep_yaml(depth: int, shape: str) -> str:
    if shape == "flow":
        return "a: " + "[" * depth + "]" * depth
    if shape == "block":
        return "".join("  " * i + f"k{i}:\n" for i in range(min(depth, 800))) + "  " * min(depth, 800) + "x\n"
    return "a: " + "{b: " * depth + "1" + "}" * depth


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_deep_nesting_is_refused_quickly(world, data):
    depth = data.draw(st.integers(min_value=65, max_value=5000), label="depth")
    writes = [e for e in world.endpoints if e.parses]
    endpoint = data.draw(st.sampled_from(writes), label="endpoint")
    config = next(e for e in world.endpoints if e.url.endswith("/config/"))
    imports = Endpoint("POST", "/v3/clusters/")
    deep_json = _deep_json(depth, data.draw(st.sampled_from(["list", "dict", "mixed"])))
    deep_yaml = _deep_yaml(depth, data.draw(st.sampled_from(["flow", "block", "flow-map"])))
    cases = [
        (endpoint, deep_json.encode(), "application/json"),
        (endpoint, ('{"name": ' + deep_json + ', "description": ' + deep_json + "}").encode(), "application/json"),
        (config, deep_yaml.encode(), "application/yaml"),
        (config, json.dumps({"yaml": deep_yaml}).encode(), "application/json"),
        (imports, json.dumps({"name": "deep", "kubeconfig": deep_yaml}).encode(), "application/json"),
    ]
    before = world.state()  # nothing changes, so one look serves every request
    for target, body, content_type in cases:
        started = time.process_time()
        response = world.send(target, body, content_type)
        check_refused(response, world, before, status=400)
        assert time.process_time() - started < 0.3, f"{target.url}: {time.process_time() - started:.2f} s of CPU"


@settings(FUZZ, max_examples=160)
@given(data=st.data())
def test_wrong_types_for_every_field_are_refused(world, data):
    endpoint = data.draw(st.sampled_from([e for e in world.endpoints if e.serializer is not None and e.parses]),
                         label="endpoint")
    fields = writable(endpoint.serializer)
    candidates = [name for name, f in fields.items() if not isinstance(f, drf.JSONField)]
    assume(candidates)
    wrong = data.draw(st.sampled_from(candidates), label="surely wrong field")
    body = {wrong: data.draw(surely_wrong(fields[wrong]), label=wrong)}
    for name in data.draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=len(fields)),
                          label="other fields"):
        if name != wrong:
            body[name] = data.draw(maybe_wrong(fields[name]), label=name)
    before = world.state()
    raw = json.dumps(body).encode("utf-8", "surrogatepass")
    check_refused(world.send(endpoint, raw), world, before)


@settings(FUZZ, max_examples=30)
@given(data=st.data())
def test_bodies_that_are_not_utf8_are_refused(world, data):
    endpoint = data.draw(st.sampled_from([e for e in world.endpoints if e.parses]), label="endpoint")
    text = data.draw(st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0xFF), min_size=1,
                             max_size=20), label="text")
    encoding = data.draw(st.sampled_from(["latin-1", "utf-16", "utf-32", "cp1252"]))
    field_name = data.draw(st.sampled_from(["name", "yaml", "kubeconfig", "description"]))
    body = json.dumps({field_name: text}, ensure_ascii=False).encode(encoding, "replace")
    assume(not is_json_object(body))
    before = world.state()
    for content_type in ("application/json", "application/yaml"):
        response = world.send(endpoint, body, content_type)
        error = check_refused(response, world, before)
        if response.status_code == 400:
            assert "UTF-8" in error["message"], error


BASE_KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
    "users": [{"name": "u", "user": {"token": "t0ken"}}],
    "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "x",
}
NOT_STR = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.text(max_size=4), max_size=3),
                    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
NOT_STR_OR_NONE = st.one_of(st.none(), NOT_STR)
NOT_LIST = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans(),
                     st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2))
NOT_DICT = st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=3))
BAD_BASE64 = st.one_of(NOT_STR, st.sampled_from(["not base64!", "@@@@", "YQ", "aGVsbG8=", "LS0tLS1CRUdJTg=="]))
BAD_URL = st.one_of(NOT_STR_OR_NONE, st.sampled_from(["ftp://h", "https://", "//h", "h:443", "https://[::1",
                                                      "https://h:99999999", "https://h/\x7f", "https://" + "a" * 400,
                                                      "javascript:alert(1)", "file:///etc/passwd"]))
ANYTHING = st.one_of(st.none(), st.text(max_size=20), NOT_STR)
MUTATIONS = {
    "current-context": NOT_STR.filter(lambda v: v not in ("", 0, False, [], {}, 0.0)),
    "clusters": NOT_LIST, "users": NOT_LIST, "contexts": NOT_LIST,
    "clusters.0": NOT_DICT, "users.0": NOT_DICT, "contexts.0": NOT_DICT,
    "clusters.0.name": NOT_STR_OR_NONE, "users.0.name": NOT_STR_OR_NONE,
    "clusters.0.cluster": NOT_DICT, "users.0.user": NOT_DICT, "contexts.0.context": NOT_DICT,
    "clusters.0.cluster.server": BAD_URL,
    "clusters.0.cluster.proxy-url": BAD_URL.filter(lambda v: v is not None),
    "clusters.0.cluster.certificate-authority-data": BAD_BASE64,
    "clusters.0.cluster.insecure-skip-tls-verify": st.one_of(st.just(True), NOT_STR.filter(
        lambda v: not isinstance(v, bool)), st.text(min_size=1, max_size=5)),
    "clusters.0.cluster.certificate-authority": ANYTHING,
    "users.0.user.tokenFile": ANYTHING, "users.0.user.client-certificate": ANYTHING,
    "users.0.user.client-key": ANYTHING, "users.0.user.exec": ANYTHING, "users.0.user.auth-provider": ANYTHING,
    "users.0.user.token": NOT_STR_OR_NONE,
    "users.0.user.client-certificate-data": BAD_BASE64, "users.0.user.client-key-data": BAD_BASE64,
    "contexts.0.context.cluster": st.one_of(NOT_STR_OR_NONE, st.just("elsewhere")),
    "contexts.0.context.user": st.one_of(NOT_STR_OR_NONE, st.just("nobody")),
    "contexts.0.context.namespace": NOT_STR,
}


def _mutate(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return  # an earlier mutation replaced the parent: the document is wrong already
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_hostile_kubeconfigs_are_refused_before_contact(world, data):
    doc = copy.deepcopy(BASE_KUBECONFIG)
    for path in data.draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3, unique=True),
                          label="paths"):
        _mutate(doc, path, data.draw(MUTATIONS[path], label=path))
    text = yaml.safe_dump(doc, allow_unicode=True)
    before = world.state()
    imported = world.send(Endpoint("POST", "/v3/clusters/"), json.dumps({"name": "fuzz-new", "kubeconfig": text}).encode())
    error = check_refused(imported, world, before, status=400)
    assert list(error.get("fields") or {}) == ["kubeconfig"], error
    replaced = world.send(Endpoint("PATCH", f"/v3/clusters/{world.cluster.pk}/"),
                          json.dumps({"kubeconfig": text}).encode())
    check_refused(replaced, world, before, status=400)


def test_bodies_over_the_limit_answer_413(world, settings):
    config = next(e for e in world.endpoints if e.url.endswith("/config/"))
    huge = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    for endpoint, body, content_type in [(Endpoint("POST", "/v3/clusters/"), huge, "application/json"),
                                         (config, b"a: " + b"x" * (1024 * 1024), "application/yaml"),
                                         (Endpoint("POST", "/v3/groups/"), b"name=" + b"x" * (1024 * 1024),
                                          "application/x-www-form-urlencoded")]:
        before = world.state()
        error = check_refused(world.send(endpoint, body, content_type), world, before, status=413)
        assert error["code"] == "request_too_large" and "1024 KiB" in error["message"]

    # A client that leaves Content-Length out is still cut off at the limit by the parser.
    from io import BytesIO

    from portal.api.parsers import JSONParser, RequestTooLarge
    with pytest.raises(RequestTooLarge):
        JSONParser().parse(BytesIO(huge))

    # Huge but under the limit: refused by validation, quickly.
    big = json.dumps({"name": "big", "description": "x" * 900_000, "kubeconfig": "k" * 50_000}).encode()
    before = world.state()
    check_refused(world.send(Endpoint("POST", "/v3/clusters/"), big), world, before, status=400)


@pytest.mark.parametrize("body,content_type,words", [
    (b"", "application/yaml", "The body is empty"),
    (b"", "application/json", "The body is empty"),
    (b"null", "application/yaml", "the config is empty"),
    (b"~", "application/yaml", "the config is empty"),
    (b"# only a comment\n", "application/yaml", "the config is empty"),
    (b"   \n", "application/yaml", "the config is empty"),
    (b"v1.16.8", "application/yaml", "must be a mapping of settings, not a text"),
    (b"- kubernetes_version: v1.16.8", "application/yaml", "must be a mapping of settings, not a list"),
    (b"42", "application/yaml", "must be a mapping of settings, not a number"),
    (b'{"yaml": "null"}', "application/json", "the config is empty"),
    (b'{"yaml": "[1, 2]"}', "application/json", "not a list"),
    (b'{"document": {}}', "application/json", "Send either"),
    (b'{"document": null}', "application/json", "may not be null"),
    (b'{"document": [1]}', "application/json", "dictionary"),
    (b"null", "application/json", ""),
    (b"[]", "application/json", ""),
    (b'{"document": {"etcd_backup": {"target": "a\\u0000b"}}}', "application/json", "NUL"),
    (b'{"document": {"upgrade_strategy": {"node_upgrade_timeout": 1e400}}}', "application/json", "out of range"),
    (b'{"document": {"upgrade_strategy": {"node_upgrade_timeout": 99999999999999999999}}}', "application/json",
     "at most"),
    (b'etcd_backup: {target: "a\\0b"}', "application/yaml", "NUL"),
    (b"kubernetes_version: 2020-13-45", "application/yaml", "cannot be read"),
    (b"\xff\xfe k: v", "application/yaml", "UTF-8"),
])
def test_empty_null_and_non_mapping_configs_save_nothing(world, body, content_type, words):
    config = next(e for e in world.endpoints if e.url.endswith("/config/"))
    before = world.state()
    versions = ClusterConfigVersion.objects.count()
    error = check_refused(world.send(config, body, content_type), world, before, status=400)
    assert words in json.dumps(error), error
    assert ClusterConfigVersion.objects.count() == versions


@pytest.mark.parametrize("text,words", [
    ("null", "the config is empty"), ("   ", "the config is empty"), ("# nothing\n", "the config is empty"),
    ("[1, 2]", "not a list"), ("v1.16.8", "not a text"), ("a: " + "[" * 3000 + "]" * 3000, "nested deeper"),
])
def test_edit_as_yaml_form_refuses_empty_and_non_mapping_documents(world, text, words):
    form = ConfigYAMLForm(data={"yaml": text, "comment": ""}, cluster=world.cluster)
    assert not form.is_valid()
    assert words in " ".join(form.errors["yaml"]), form.errors


def test_every_api_error_is_the_json_body(world, monkeypatch):
    cases = [("GET", "/v3/no-such-thing/", 404), ("GET", "/v3/clusters/abc/", 404), ("POST", "/v3/x/y/z", 404),
             ("GET", f"/v3/clusters/{world.cluster.pk}/nope/", 404), ("DELETE", "/v3/", 405),
             ("POST", "/v3/nodes/", 405), ("PUT", "/v3/clusters/", 405)]
    before = world.state()
    for method, url, status in cases:
        error = check_refused(world.client.generic(method, url), world, before, status=status)
        assert "Traceback" not in error["message"]
    error = check_refused(world.send(Endpoint("POST", "/v3/groups/"), b"name: x", "text/plain"), world, before,
                          status=415)
    assert error["code"] == "unsupported_media_type"

    from clusters.api import views

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals /etc/corral")

    monkeypatch.setattr(views.ClusterViewSet, "list", boom)
    response = world.client.get("/v3/clusters/")
    assert response.status_code == 500 and response["Content-Type"].startswith("application/json")
    assert response.json() == {"error": {"status": 500, "code": "server_error",
                                         "message": "Something went wrong on the server; it has been logged."}}
