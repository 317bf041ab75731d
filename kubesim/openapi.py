"""OpenAPI documents with the upstream schemas (schemas.py) and CRD schemas.

`kubectl apply` (1.27+) asks /openapi/v3 whether each PATCH operation takes the
`fieldValidation` query parameter; when it does, kubectl leaves validation to
the server.  Every group version gets a v3 document with one path item per
resource carrying the `x-kubernetes-group-version-kind` extension and, in
`components.schemas`, its kinds' schemas, like the real server's.  /openapi/v2
has the same schemas as JSON `definitions` or protobuf (openapi_pb.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from . import schemas as schemas_mod
from .discovery import TypeIndex

if TYPE_CHECKING:
    from .apiserver import Request, Response
    from .cluster import Cluster

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force", "pretty")
_LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion",
                "resourceVersionMatch", "timeoutSeconds", "watch")


def _schema_name(group: str, version: str, kind: str) -> str:
    g = group or "core"
    return f"io.k8s.api.{g}.{version}.{kind}"


def _params(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "description": n, "schema": {"type": "string", "uniqueItems": True}} for n in names]


def _op(action: str, gvk: dict[str, str], op_id: str, params: tuple[str, ...], body: tuple[str, ...] = (),
        ref: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "parameters": _params(params),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if body:
        op["requestBody"] = {"content": {ct: {"schema": {"$ref": ref}} for ct in body}, "required": True}
    return op


def gv_document(cluster: Cluster, idx: TypeIndex, group: str, version: str) -> dict[str, Any]:
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in idx.gv_types.get((group, version), []):
        gvk = {"group": group, "version": version, "kind": rt.kind}
        real = schemas_mod.components(cluster, rt, group, version)  # upstream / CRD schemas (schemas.py)
        name = real[0] if real else _schema_name(group, version, rt.kind)
        ref = f"#/components/schemas/{name}"
        if real:
            schemas.update(real[1])
            schemas.setdefault(name + "List", {"type": "object", "x-kubernetes-group-version-kind": [dict(gvk, kind=rt.kind + "List")]})
        schemas[name] = schemas.get(name) or {
            "description": f"{rt.kind} (simulated by kubesim: fields are not validated beyond the server's checks)",
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {"type": "object"},
                "status": {"type": "object"},
            },
            "x-kubernetes-group-version-kind": [gvk],
        }
        schemas.setdefault(name + "List", {"type": "object", "x-kubernetes-group-version-kind": [dict(gvk, kind=rt.kind + "List")]})
        base = f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"
        op = rt.kind + ("Namespaced" if rt.namespaced else "")
        g = "".join(p.capitalize() for p in (group or "core").replace(".k8s.io", "").split("."))
        v = version.capitalize()
        coll: dict[str, Any] = {}
        if "list" in rt.verbs:
            coll["get"] = _op("list", gvk, f"list{g}{v}{op}", _LIST_PARAMS, ref=ref + "List")
        if "create" in rt.verbs:
            coll["post"] = _op("post", gvk, f"create{g}{v}{op}", _QUERY_PARAMS, ("*/*",), ref)
        if "deletecollection" in rt.verbs:
            coll["delete"] = _op("deletecollection", gvk, f"deletecollection{g}{v}{op}", _LIST_PARAMS, ref=ref)
        if coll:
            paths[base] = coll
        item: dict[str, Any] = {}
        if "get" in rt.verbs:
            item["get"] = _op("get", gvk, f"read{g}{v}{op}", ("pretty",), ref=ref)
        if "update" in rt.verbs:
            item["put"] = _op("put", gvk, f"replace{g}{v}{op}", _QUERY_PARAMS, ("*/*",), ref)
        if "patch" in rt.verbs:
            # strategic merge is accepted but not advertised: kubectl then computes
            # its patch from its compiled-in types instead of this skeletal schema
            item["patch"] = _op("patch", gvk, f"patch{g}{v}{op}", _QUERY_PARAMS,
                                ("application/json-patch+json", "application/merge-patch+json",
                                 "application/apply-patch+yaml"), ref)
        if "delete" in rt.verbs:
            item["delete"] = _op("delete", gvk, f"delete{g}{v}{op}", ("dryRun", "gracePeriodSeconds",
                                                                      "propagationPolicy", "pretty"), ("*/*",), ref)
        if item:
            paths[base + "/{name}"] = item
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": cluster.version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


_SHARED: dict[tuple[Any, ...], tuple[bytes, str]] = {}  # built-in group versions, shared by clusters of one version


def gv_bytes(cluster: Cluster, idx: TypeIndex, group: str, version: str) -> tuple[bytes, str]:
    """A group version's v3 document, encoded, and its hash; cached (shared across clusters unless CRD-defined)."""
    types = idx.gv_types.get((group, version), [])
    custom = any(rt.custom for rt in types)
    key = (cluster.version, cluster.minor, group, version, tuple(rt.kind for rt in types))
    cache = idx._cache if custom else _SHARED
    got = cache.get(("openapi-v3",) + key) if custom else cache.get(key)
    if got is None:
        doc = json.dumps(gv_document(cluster, idx, group, version), sort_keys=True).encode()
        got = (doc, hashlib.sha512(doc).hexdigest()[:128].upper())
        if custom:
            cache[("openapi-v3",) + key] = got
        else:
            if len(_SHARED) > 512:
                _SHARED.clear()
            _SHARED[key] = got
    return got


def v2_definitions(cluster: Cluster, idx: TypeIndex) -> dict[str, Any]:
    """The v3 components of every served group version, with v2 references."""
    out: dict[str, Any] = {}
    for group, version in sorted(idx.gv_types):
        out.update(json.loads(gv_bytes(cluster, idx, group, version)[0])["components"]["schemas"])
    text = json.dumps(out).replace('"#/components/schemas/', '"#/definitions/')
    return json.loads(text)


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def handle(cluster: Cluster, idx: TypeIndex, path: str, req: Request) -> Response:
    from .apiserver import Response, json_response

    if path == "/openapi/v3":
        out: dict[str, Any] = {}
        for group, version in sorted(idx.gv_types):
            rel = f"apis/{group}/{version}" if group else f"api/{version}"
            _doc, digest = gv_bytes(cluster, idx, group, version)
            out[rel] = {"serverRelativeURL": f"{cluster.base_path}/openapi/v3/{rel}?hash={digest}"}
        out["version"] = {"serverRelativeURL": f"{cluster.base_path}/openapi/v3/version?hash=0"}
        return json_response(200, {"paths": out})
    if path.startswith("/openapi/v3/"):
        rel = path[len("/openapi/v3/"):].split("/")
        if rel == ["version"]:
            return json_response(200, {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": cluster.version}, "paths": {}})
        if len(rel) == 2 and rel[0] == "api":
            group, version = "", rel[1]
        elif len(rel) == 3 and rel[0] == "apis":
            group, version = rel[1], rel[2]
        else:
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
        if (group, version) not in idx.gv_types:
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
        doc, digest = gv_bytes(cluster, idx, group, version)
        return json_response(200, doc, {"Cache-Control": "public, immutable", "Etag": f'"{digest}"'})
    if path == "/openapi/v2":
        accept = req.headers.get("accept", "")
        if "protobuf" in accept:
            from . import openapi_pb  # the definitions, in gnostic's protobuf

            return Response(200, openapi_pb.document(cluster, idx, gv_bytes), V2_PROTOBUF)
        paths: dict[str, Any] = {}
        for group, version in sorted(idx.gv_types):
            for p, item in gv_document(cluster, idx, group, version)["paths"].items():
                paths[p] = {m: {k: v for k, v in op.items() if k not in ("requestBody", "responses")} | {"responses": {"200": {"description": "OK"}}}
                            for m, op in item.items()}
        return json_response(200, {"swagger": "2.0", "info": {"title": "Kubernetes", "version": cluster.version},
                                   "paths": paths, "definitions": v2_definitions(cluster, idx)})
    return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
