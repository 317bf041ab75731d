"""OpenAPI documents, enough for clients that read them.

`kubectl apply` (1.27+) asks /openapi/v3 whether each PATCH operation takes the
`fieldValidation` query parameter; when it does, kubectl leaves validation to
the server and skips downloading the protobuf OpenAPI v2 schema.  So every
group version gets a v3 document with one path item per resource carrying
the `x-kubernetes-group-version-kind` extension, like the real server's.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

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
        name = _schema_name(group, version, rt.kind)
        ref = f"#/components/schemas/{name}"
        schemas[name] = {
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
        schemas[name + "List"] = {"type": "object", "x-kubernetes-group-version-kind": [dict(gvk, kind=rt.kind + "List")]}
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


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _pb_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    out = bytearray()
    for value in ((number << 3) | 2, len(payload)):
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
    return bytes(out) + payload


def v2_protobuf(version: str) -> bytes:
    """A gnostic openapi_v2.Document with swagger, info and empty paths/definitions.

    kubectl 1.27 downloads this before `apply`; with no definitions it computes
    strategic merge patches from its compiled-in types, and leaves validation
    to the server because /openapi/v3 advertises `fieldValidation`.
    """
    info = _pb_field(1, b"Kubernetes") + _pb_field(2, version.encode())
    return _pb_field(1, b"2.0") + _pb_field(2, info) + _pb_field(8, b"") + _pb_field(9, b"")


def handle(cluster: Cluster, idx: TypeIndex, path: str, req: Request) -> Response:
    from .apiserver import Response, json_response

    if path == "/openapi/v3":
        out: dict[str, Any] = {}
        for group, version in sorted(idx.gv_types):
            rel = f"apis/{group}/{version}" if group else f"api/{version}"
            doc = json.dumps(gv_document(cluster, idx, group, version), sort_keys=True).encode()
            digest = hashlib.sha512(doc).hexdigest()[:128].upper()
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
        return json_response(200, gv_document(cluster, idx, group, version),
                             {"Cache-Control": "public, immutable", "Etag": '"sim"'})
    if path == "/openapi/v2":
        accept = req.headers.get("accept", "")
        if "protobuf" in accept:
            return Response(200, v2_protobuf(cluster.version), V2_PROTOBUF)
        paths: dict[str, Any] = {}
        for group, version in sorted(idx.gv_types):
            for p, item in gv_document(cluster, idx, group, version)["paths"].items():
                paths[p] = {m: {k: v for k, v in op.items() if k not in ("requestBody", "responses")} | {"responses": {"200": {"description": "OK"}}}
                            for m, op in item.items()}
        return json_response(200, {"swagger": "2.0", "info": {"title": "Kubernetes", "version": cluster.version},
                                   "paths": paths, "definitions": {}})
    return Response(404, b"404 page not found\n", "text/plain; charset=utf-8")
