"""Real schemas: upstream OpenAPI v2/v3 per minor (kubernetes-validate's definitions), CRD schemas merged in,
`kubectl explain`, and `fieldValidation` (Strict / Warn / Ignore) on create, update and patch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from ksim_helpers import Kubectl, wait_until
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim import Fleet, schemas
from kubesim.apiserver import Request

BAD_CM = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data: {{mode: blue}}
spec:
  foo: 1
"""

BAD_DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  foo: bar
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: app
        image: nginx:1.25
        colour: red
"""

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "description": "A widget of the test suite.",
                 "properties": {"spec": {"type": "object", "description": "What the widget should be.",
                                         "properties": {"size": {"type": "integer",
                                                                 "description": "How big the widget is, in cubits."}}}}}}}]},
}


def _kc(fleet: Fleet, name: str, binary: str, tmp_path: Path) -> Kubectl:
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(fleet.kubeconfig(name))
    return Kubectl(binary, cfg)


def _req(fleet: Fleet, cluster: str, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
         ctype: str = "application/json", accept: str = "application/json") -> tuple[int, Any, dict[str, str]]:
    c = fleet.cluster(cluster)
    data = json.dumps(body).encode() if body is not None else b""
    resp = c.api.handle(Request(method, path, query or {}, {"content-type": ctype, "accept": accept}, data))
    parsed = json.loads(resp.body) if resp.body and resp.content_type.startswith("application/json") else resp.body
    return resp.status, parsed, resp.headers


# ------------------------------------------------------------------ schema source and sharing
def test_schema_source_per_minor_is_nearest_and_shared() -> None:
    have = schemas.available_minors()
    assert have[0] == 15 and set(range(15, 38)) <= set(have)  # 1.15-1.24 vendored, 1.25+ from the package
    assert schemas.schema_minor(15) == 15 and schemas.schema_minor(18) == 18 and schemas.schema_minor(12) == 15
    assert schemas.schema_minor(27) == 27 and schemas.schema_minor(99) == have[-1]
    assert schemas.definitions(27) is schemas.definitions(27)  # loaded once, shared by every cluster of a minor
    assert schemas.definitions(12) is schemas.definitions(15)
    old = schemas.definitions(16)
    assert old is not None and old.minor == 16
    assert ("extensions", "v1beta1", "Deployment") in old.by_gvk  # what 1.16 still served
    d = schemas.definitions(33)
    assert d is not None and d.by_gvk[("apps", "v1", "Deployment")] == "io.k8s.api.apps.v1.Deployment"


def test_unknown_field_paths_and_pruning() -> None:
    d = schemas.definitions(27)
    assert d is not None
    schema = d.schemas["io.k8s.api.apps.v1.Deployment"]
    obj = yaml.safe_load(BAD_DEPLOYMENT.format(name="x"))
    obj["metadata"]["labels"] = {"any": "label"}
    obj["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": "25%"}}
    assert schemas.unknown_fields(obj, schema, d.schemas) == ["spec.foo", "spec.template.spec.containers[0].colour"]
    assert schemas.unknown_fields(obj, schema, d.schemas, prune=True)
    assert "foo" not in obj["spec"] and "colour" not in obj["spec"]["template"]["spec"]["containers"][0]
    assert schemas.unknown_fields(obj, schema, d.schemas) == []


# ------------------------------------------------------------------ OpenAPI documents
def test_openapi_v3_documents_carry_upstream_schemas(fleet: Fleet) -> None:
    status, index, _ = _req(fleet, "new1", "GET", "/openapi/v3")
    assert status == 200 and "apis/apps/v1" in index["paths"] and "api/v1" in index["paths"]
    status, doc, headers = _req(fleet, "new1", "GET", "/openapi/v3/apis/apps/v1")
    assert status == 200
    comps = doc["components"]["schemas"]
    dep = comps["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert "replicas" in comps["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
    assert "io.k8s.api.core.v1.PodSpec" in comps and "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in comps
    post = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"]
    assert post["requestBody"]["content"]["*/*"]["schema"]["$ref"] == "#/components/schemas/io.k8s.api.apps.v1.Deployment"
    assert any(p["name"] == "fieldValidation" for p in post["parameters"])
    # the same document for a second request and for another cluster of the same version: one shared copy
    from kubesim import openapi

    idx = fleet.cluster("new1").types()
    assert openapi.gv_bytes(fleet.cluster("new1"), idx, "apps", "v1") is openapi.gv_bytes(fleet.cluster("new1"), idx, "apps", "v1")
    # an old cluster (1.15) is served 1.15's schemas
    status, old, _ = _req(fleet, "rke1", "GET", "/openapi/v3/api/v1")
    assert status == 200 and "io.k8s.api.core.v1.Pod" in old["components"]["schemas"]
    status, pol, _ = _req(fleet, "rke1", "GET", "/openapi/v3/apis/policy/v1beta1")  # gone from 1.25's schemas
    pdb = pol["components"]["schemas"]["io.k8s.api.policy.v1beta1.PodDisruptionBudgetStatus"]
    assert status == 200 and "disruptionsAllowed" in pdb["properties"] and "currentHealthy" in pdb["properties"]


def test_openapi_v2_json_has_definitions(fleet: Fleet) -> None:
    status, doc, _ = _req(fleet, "new1", "GET", "/openapi/v2")
    assert status == 200 and doc["swagger"] == "2.0"
    defs = doc["definitions"]
    spec = defs["io.k8s.api.core.v1.PodSpec"]
    assert spec["properties"]["containers"]["items"]["$ref"] == "#/definitions/io.k8s.api.core.v1.Container"
    status, pb, _ = _req(fleet, "new1", "GET", "/openapi/v2",
                         accept="application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    assert status == 200 and isinstance(pb, bytes)
    assert pb.startswith(b"\n\x032.0") and b"io.k8s.api.apps.v1.Deployment" in pb and b"Number of desired pods." in pb


def test_crd_schema_merged_into_openapi(fleet: Fleet) -> None:
    status, _, _ = _req(fleet, "new1", "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    assert status == 201
    wait_until(lambda: _req(fleet, "new1", "GET", "/apis/example.com/v1")[0] == 200)
    status, index, _ = _req(fleet, "new1", "GET", "/openapi/v3")
    assert "apis/example.com/v1" in index["paths"]
    status, doc, _ = _req(fleet, "new1", "GET", "/openapi/v3/apis/example.com/v1")
    widget = doc["components"]["schemas"]["com.example.v1.Widget"]
    assert widget["properties"]["spec"]["properties"]["size"]["description"] == "How big the widget is, in cubits."
    assert widget["x-kubernetes-group-version-kind"] == [{"group": "example.com", "version": "v1", "kind": "Widget"}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in doc["components"]["schemas"]
    # and fieldValidation applies to custom resources too
    w = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3, "colour": "red"}}
    status, body, _ = _req(fleet, "new1", "POST", "/apis/example.com/v1/namespaces/default/widgets", w,
                           {"fieldValidation": "Strict"})
    assert status == 400 and 'unknown field "spec.colour"' in body["message"]


# ------------------------------------------------------------------ kubectl explain
def test_kubectl_explain_lists_fields_with_descriptions(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    kc = _kc(fleet, "new1", kubectl_binary, tmp_path)
    out = kc.out("explain", "deployment.spec")
    assert "DeploymentSpec is the specification of the desired behavior of the" in out
    assert "replicas\t<integer>" in out and "Number of desired pods." in out
    assert "template\t<PodTemplateSpec> -required-" in out or "template\t<Object> -required-" in out
    out = kc.out("explain", "pods.spec.containers")
    assert "image\t<string>" in out and "Container image name." in out
    assert "name\t<string> -required-" in out
    # kubectl's OpenAPI v2 path: the protobuf document has the same definitions
    out = kc.out("explain", "deployment.spec", "--output=plaintext-openapiv2")
    assert "RESOURCE: spec <Object>" in out and "Number of desired pods." in out
    # a CRD's schema
    status, _, _ = _req(fleet, "new1", "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGET_CRD)
    assert status == 201
    wait_until(lambda: _req(fleet, "new1", "GET", "/apis/example.com/v1")[0] == 200)
    out = kc.out("explain", "widgets.spec")
    assert "What the widget should be." in out and "size\t<integer>" in out and "How big the widget is, in cubits." in out


# ------------------------------------------------------------------ fieldValidation through kubectl
def test_kubectl_apply_strict_refuses_and_warn_warns(fleet: Fleet, kubectl_binary: str, tmp_path: Path) -> None:
    kc = _kc(fleet, "new1", kubectl_binary, tmp_path)
    store = fleet.cluster("new1").store
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(BAD_DEPLOYMENT.format(name="strict"))
    for flag in ("--validate=strict", "--validate=true"):
        proc = kc.run("apply", flag, "-f", str(manifest), check=False)
        assert proc.returncode == 1
        assert 'Error from server (BadRequest): error when creating "' in proc.stderr
        assert ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
                'unknown field "spec.foo", unknown field "spec.template.spec.containers[0].colour"') in proc.stderr
        assert store.get("deployments.apps", "default", "strict") is None
    proc = kc.run("apply", "--validate=warn", "-f", str(manifest))
    assert 'Warning: unknown field "spec.foo"' in proc.stderr
    assert 'Warning: unknown field "spec.template.spec.containers[0].colour"' in proc.stderr
    stored = store.get("deployments.apps", "default", "strict")
    assert stored is not None and "foo" not in stored["spec"]
    assert "colour" not in stored["spec"]["template"]["spec"]["containers"][0]
    # an existing object: the patch kubectl sends is checked too
    manifest.write_text(BAD_DEPLOYMENT.format(name="strict").replace("replicas: 1", "replicas: 2\n  bar: 1"))
    proc = kc.run("apply", "-f", str(manifest), check=False)
    assert proc.returncode == 1 and "strict decoding error: " in proc.stderr and 'unknown field "spec.bar"' in proc.stderr
    proc = kc.run("apply", "--validate=false", "-f", str(manifest))  # Ignore: dropped silently
    assert "Warning" not in proc.stderr
    stored = store.get("deployments.apps", "default", "strict")
    assert stored["spec"]["replicas"] == 2 and "bar" not in stored["spec"]


# ------------------------------------------------------------------ fieldValidation through the official client
def _raw(api: Any, method: str, path: str, body: Any, query: dict[str, str] | None = None,
         ctype: str = "application/json") -> tuple[int, Any, Any]:
    """A request through the official client's ApiClient, past its typed models (which refuse unknown fields)."""
    m, url, headers, data, _ = api.param_serialize(method, path, query_params=list((query or {}).items()),
                                                   header_params={"Content-Type": ctype, "Accept": "application/json"},
                                                   body=body, auth_settings=["BearerToken"])
    try:
        resp = api.call_api(m, url, headers, data)
        resp.read()
        return resp.status, json.loads(resp.data), resp.headers
    except ApiException as e:
        return e.status, json.loads(e.body), e.headers


def test_client_field_validation_modes(fleet: Fleet, kube_client: Any) -> None:
    api = kube_client("new1")
    core = client.CoreV1Api(api)
    store = fleet.cluster("new1").store
    # the typed API sends the parameter (a valid body passes Strict)
    core.create_namespaced_config_map("default", {"metadata": {"name": "typed"}, "data": {"a": "b"}}, field_validation="Strict")
    assert store.get("configmaps", "default", "typed")["data"] == {"a": "b"}
    cms = "/api/v1/namespaces/default/configmaps"
    status, out, _ = _raw(api, "POST", cms, yaml.safe_load(BAD_CM.format(name="cm-strict")), {"fieldValidation": "Strict"})
    assert status == 400 and out["reason"] == "BadRequest"
    assert out["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
                              'unknown field "spec"')
    assert store.get("configmaps", "default", "cm-strict") is None
    for mode in ("Warn", "Ignore", None):
        name = f"cm-{(mode or 'default').lower()}"
        status, _, headers = _raw(api, "POST", cms, yaml.safe_load(BAD_CM.format(name=name)),
                                  {"fieldValidation": mode} if mode else {})
        assert status == 201
        assert (headers.get("Warning") == '299 - "unknown field \\"spec\\""') == (mode != "Ignore")
        stored = store.get("configmaps", "default", name)
        assert stored["data"] == {"mode": "blue"} and "spec" not in stored
    # update (PUT) and merge patch
    rv = store.get("configmaps", "default", "cm-warn")["metadata"]["resourceVersion"]
    put = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-warn", "resourceVersion": rv},
           "data": {"mode": "green"}, "extra": True}
    status, out, _ = _raw(api, "PUT", cms + "/cm-warn", put, {"fieldValidation": "Strict"})
    assert status == 400 and 'unknown field "extra"' in out["message"]
    status, out, _ = _raw(api, "PATCH", cms + "/cm-warn", {"data": {"x": "y"}, "bogus": 1}, {"fieldValidation": "Strict"},
                          "application/merge-patch+json")
    assert status == 400 and 'unknown field "bogus"' in out["message"]
    status, out, _ = _raw(api, "PATCH", cms + "/cm-warn", {"data": {"x": "y"}, "bogus": 1}, {"fieldValidation": "Ignore"},
                          "application/merge-patch+json")
    assert status == 200
    stored = store.get("configmaps", "default", "cm-warn")
    assert stored["data"]["x"] == "y" and "bogus" not in stored


def test_warning_header_and_invalid_directive(fleet: Fleet) -> None:
    body = yaml.safe_load(BAD_CM.format(name="hdr"))
    status, _, headers = _req(fleet, "new1", "POST", "/api/v1/namespaces/default/configmaps", body)
    assert status == 201 and headers["Warning"] == '299 - "unknown field \\"spec\\""'
    status, out, _ = _req(fleet, "new1", "POST", "/api/v1/namespaces/default/configmaps",
                          yaml.safe_load(BAD_CM.format(name="hdr2")), {"fieldValidation": "Loud"})
    assert status == 400 and "fieldValidation Loud is invalid" in out["message"]
    # clusters older than 1.25 keep what they are sent (no server-side field validation there)
    status, _, headers = _req(fleet, "rke1", "POST", "/api/v1/namespaces/default/configmaps",
                              yaml.safe_load(BAD_CM.format(name="old")), {"fieldValidation": "Strict"})
    assert status == 201 and "Warning" not in headers


def test_duplicate_fields(fleet: Fleet) -> None:
    assert schemas.duplicate_fields(b'{"spec": {"replicas": 1, "replicas": 2, "x": [{"a": 1, "a": 2}]}}') == \
        ["spec.replicas", "spec.x[0].a"]
    c = fleet.cluster("new1")
    raw = b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}, "data": {"a": "1", "a": "2"}}'
    for mode, code in (("Strict", 400), ("Warn", 201)):
        resp = c.api.handle(Request("POST", "/api/v1/namespaces/default/configmaps", {"fieldValidation": mode},
                                    {"content-type": "application/json"}, raw))
        assert resp.status == code
        if code == 400:
            assert 'strict decoding error: duplicate field "data.a"' in json.loads(resp.body)["message"]
        else:
            assert resp.headers["Warning"] == '299 - "duplicate field \\"data.a\\""'
            assert c.store.get("configmaps", "default", "dup")["data"] == {"a": "2"}  # the last one wins
