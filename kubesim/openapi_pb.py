"""`/openapi/v2` as protobuf (gnostic `openapi_v2.Document`), what kubectl 1.27 downloads.

Only swagger, info and `definitions` are encoded (paths stay empty): kubectl reads the
definitions by `x-kubernetes-group-version-kind` (for `explain --output plaintext-openapiv2`
and strategic-merge patch metadata).  Field numbers are gnostic's OpenAPIv2.proto.
Documents are cached by Kubernetes version and the set of group-version documents (their
hashes), so clusters of one version with the same CRDs share one copy.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from .cluster import Cluster
    from .discovery import TypeIndex

_CACHE: dict[tuple[str, str], bytes] = {}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _s(number: int, text: str) -> bytes:
    return _ld(number, text.encode())


def _ext(name: str, value: Any) -> bytes:
    """NamedAny{name, Any{yaml}}."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True) if not isinstance(value, str) else value + "\n"
    return _ld(31, _s(1, name) + _ld(2, _s(2, text)))


def schema(node: dict[str, Any]) -> bytes:
    out = bytearray()
    if "allOf" in node and len(node["allOf"]) == 1 and "$ref" in node["allOf"][0]:
        node = {k: v for k, v in node.items() if k != "allOf"} | {"$ref": node["allOf"][0]["$ref"]}
    if "$ref" in node:
        out += _s(1, node["$ref"].replace("#/components/schemas/", "#/definitions/"))
    if node.get("format"):
        out += _s(2, node["format"])
    if node.get("description"):
        out += _s(4, node["description"])
    if isinstance(node.get("maximum"), (int, float)):
        out += _varint((7 << 3) | 1) + struct.pack("<d", float(node["maximum"]))
    if isinstance(node.get("minimum"), (int, float)):
        out += _varint((9 << 3) | 1) + struct.pack("<d", float(node["minimum"]))
    for r in node.get("required") or []:
        out += _s(19, r)
    for e in node.get("enum") or []:
        out += _ld(20, _s(2, yaml.safe_dump(e).removesuffix("\n...\n") if not isinstance(e, str) else e + "\n"))
    addl = node.get("additionalProperties")
    if isinstance(addl, dict):
        out += _ld(21, _ld(1, schema(addl)))
    elif isinstance(addl, bool):
        out += _ld(21, _varint((2 << 3) | 0) + _varint(int(addl)))
    if isinstance(node.get("type"), str):
        out += _ld(22, _s(1, node["type"]))
    if isinstance(node.get("items"), dict):
        out += _ld(23, _ld(1, schema(node["items"])))
    for sub in node.get("allOf") or []:
        out += _ld(24, schema(sub))
    props = node.get("properties")
    if isinstance(props, dict):
        out += _ld(25, b"".join(_ld(1, _s(1, k) + _ld(2, schema(v))) for k, v in props.items()))
    for k, v in node.items():
        if k.startswith("x-"):
            out += _ext(k, v)
    return bytes(out)


def document(cluster: Cluster, idx: TypeIndex, gv_bytes: Any) -> bytes:
    """The protobuf v2 document: swagger, info, empty paths, every schema the v3 documents hold."""
    import json

    hashes = "".join(gv_bytes(cluster, idx, g, v)[1] for g, v in sorted(idx.gv_types))
    key = (cluster.version, hashlib.sha256(hashes.encode()).hexdigest())
    got = _CACHE.get(key)
    if got is not None:
        return got
    defs: dict[str, Any] = {}
    for g, v in sorted(idx.gv_types):
        defs.update(json.loads(gv_bytes(cluster, idx, g, v)[0])["components"]["schemas"])
    info = _s(1, "Kubernetes") + _s(2, cluster.version)
    named = b"".join(_ld(1, _s(1, name) + _ld(2, schema(s))) for name, s in sorted(defs.items()))
    got = _s(1, "2.0") + _ld(2, info) + _ld(8, b"") + _ld(9, named)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = got
    return got
