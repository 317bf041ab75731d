"""Upstream API schemas per Kubernetes minor, and server-side field validation.

The schemas are Kubernetes' own OpenAPI definitions as shipped (converted to
JSON Schema) by the `kubernetes-validate` package (pinned in requirements.txt):
one `_definitions.json` per minor from 1.25 on; 1.15 ... 1.24 come from its
release 1.24.1, vendored in schemas_data/.  Minors without one are served the
nearest (older than 1.15: 1.15's; newer than the package's newest: its newest).  A minor's definitions are read on first use and shared
by every cluster of that minor (`functools.lru_cache`).

`fieldValidation` (Strict / Warn / Ignore) works as on kube-apiserver 1.25+:
unknown fields are refused (400 `strict decoding error: unknown field "spec.foo"`),
or dropped with a `Warning: 299 - "unknown field \\"spec.foo\\""` header, or dropped
silently.  Without the parameter the server warns (Warn is the default since
1.25, when the feature went beta).  Clusters older than 1.25 keep what they are
sent and ignore the parameter.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_DIR = "kubernetes-json-schema"
V3_REF = "#/components/schemas/"
FIRST_VALIDATING_MINOR = 25
_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string", "format": "quantity"},
}


VENDORED = Path(__file__).with_name("schemas_data")  # 1.15 ... 1.24, from kubernetes-validate 1.24.1


@functools.lru_cache(maxsize=1)
def _packaged() -> frozenset[int]:
    try:
        base = resources.files("kubernetes_validate") / SCHEMA_DIR
    except ModuleNotFoundError:
        return frozenset()
    out = set()
    for p in base.iterdir():
        name = p.name
        if name.startswith("v1.") and name.endswith(".0-local"):
            out.add(int(name.split(".")[1]))
    return frozenset(out)


@functools.lru_cache(maxsize=1)
def available_minors() -> tuple[int, ...]:
    vendored = {int(p.name.split(".")[1]) for p in VENDORED.glob("v1.*.json.gz")}
    return tuple(sorted(_packaged() | vendored))


def schema_minor(minor: int) -> int | None:
    """The minor whose upstream schemas a cluster of `minor` is served (nearest available)."""
    have = available_minors()
    if not have:
        return None
    if minor <= have[0]:
        return have[0]
    return max(m for m in have if m <= minor)


def _convert(node: Any) -> Any:
    """kubernetes-validate's JSON Schema back to OpenAPI v3 as kube-apiserver serves it."""
    if isinstance(node, list):
        return [_convert(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "$ref" and isinstance(v, str):
            out[k] = V3_REF + v.rsplit("/", 1)[-1]
        elif k == "type" and isinstance(v, list):
            kinds = [t for t in v if t != "null"]
            out[k] = kinds[0] if kinds else "object"
        elif k in ("properties", "$defs"):
            out[k] = {name: _convert(s) for name, s in v.items()}
            for name in ("apiVersion", "kind"):  # kubernetes-validate's addition, not upstream's
                if k == "properties" and isinstance(out[k].get(name), dict):
                    out[k][name].pop("enum", None)
        else:
            out[k] = _convert(v)
    if "$ref" in out and len(out) > 1:  # upstream v3 wraps a described reference in allOf
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


class Definitions:
    """One minor's schemas (OpenAPI v3 form) and its GVK index."""

    def __init__(self, minor: int, schemas: dict[str, Any]) -> None:
        self.minor = minor
        self.schemas = schemas
        self.by_gvk: dict[tuple[str, str, str], str] = {}
        for name, s in schemas.items():
            for gvk in s.get("x-kubernetes-group-version-kind") or []:
                self.by_gvk[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = name

    def closure(self, names: list[str]) -> dict[str, Any]:
        """The named schemas and every schema they reference."""
        out: dict[str, Any] = {}
        todo = list(names)
        while todo:
            n = todo.pop()
            if n in out or n not in self.schemas:
                continue
            out[n] = self.schemas[n]
            _refs(out[n], todo)
        return out


def _refs(node: Any, acc: list[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                acc.append(v.rsplit("/", 1)[-1])
            else:
                _refs(v, acc)
    elif isinstance(node, list):
        for x in node:
            _refs(x, acc)


@functools.cache
def _load(smin: int) -> Definitions:
    if smin in _packaged():
        path = resources.files("kubernetes_validate") / SCHEMA_DIR / f"v1.{smin}.0-local" / "_definitions.json"
        raw = json.loads(path.read_text())
    else:
        raw = json.loads(gzip.decompress((VENDORED / f"v1.{smin}.json.gz").read_bytes()))
    defs = raw.get("$defs") or raw.get("definitions") or {}
    schemas = {name: _SPECIAL.get(name) or _convert(s) for name, s in defs.items()}
    for name, special in _SPECIAL.items():
        if name in schemas:
            schemas[name] = dict(special, description=defs[name].get("description", "")) \
                if defs[name].get("description") else dict(special)
    return Definitions(smin, schemas)


def definitions(minor: int) -> Definitions | None:
    smin = schema_minor(minor)
    return _load(smin) if smin is not None else None


def crd_schema_name(group: str, version: str, kind: str) -> str:
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The served schema of one version of a CRD, as kube-apiserver publishes it."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    schema = None
    for v in spec.get("versions") or []:
        if v.get("name") == version:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
    if schema is None:
        schema = (spec.get("validation") or {}).get("openAPIV3Schema")  # apiextensions v1beta1
    gvk = {"group": spec.get("group", ""), "version": version, "kind": names.get("kind", "")}
    out = dict(schema) if isinstance(schema, dict) else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    props = dict(out.get("properties") or {})
    props.setdefault("apiVersion", {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."})
    props.setdefault("kind", {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."})
    props["metadata"] = {"allOf": [{"$ref": V3_REF + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
                         "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}
    out["properties"] = props
    out.setdefault("type", "object")
    out["x-kubernetes-group-version-kind"] = [gvk]
    return out


def components(cluster: Any, rt: Any, group: str, version: str) -> tuple[str, dict[str, Any]] | None:
    """(schema name, the schemas it needs) of one served type for the OpenAPI documents."""
    defs = definitions(cluster.minor)
    if rt.custom:
        crd = find_crd(cluster, rt)
        if crd is None:
            return None
        name = crd_schema_name(group, version, rt.kind)
        out = {name: crd_schema(crd, version)}
        lst = {"description": f"{rt.kind}List is a list of {rt.kind}", "type": "object", "required": ["items"],
               "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                              "items": {"type": "array", "items": {"$ref": V3_REF + name}},
                              "metadata": {"allOf": [{"$ref": V3_REF + "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"}]}},
               "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": rt.kind + "List"}]}
        out[name + "List"] = lst
        if defs is not None:
            out.update(defs.closure(["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                                     "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"]))
        return name, out
    if defs is None:
        return None
    name = defs.by_gvk.get((group, version, rt.kind))
    if name is None:
        return None
    names = [name]
    lst = defs.by_gvk.get((group, version, rt.kind + "List"))
    if lst:
        names.append(lst)
    return name, defs.closure(names)


# ------------------------------------------------------------------ unknown fields
def _resolve(schema: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    for _ in range(32):
        if not isinstance(schema, dict):
            return {}
        if "$ref" in schema:
            schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        elif "allOf" in schema and len(schema["allOf"]) == 1 and "properties" not in schema:
            schema = schema["allOf"][0]
        else:
            return schema
    return {}


def unknown_fields(obj: Any, schema: dict[str, Any], schemas: dict[str, Any], prune: bool = False) -> list[str]:
    """Paths of the fields `schema` does not know (`spec.foo`, `spec.containers[0].bar`); `prune` drops them."""
    out: list[str] = []
    _walk(obj, schema, schemas, "", out, prune)
    return out


def _walk(v: Any, schema: Any, schemas: dict[str, Any], path: str, out: list[str], prune: bool) -> None:
    s = _resolve(schema, schemas)
    if not s or s.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(v, dict):
        props = s.get("properties")
        addl = s.get("additionalProperties")
        for k in list(v):
            sub = f"{path}.{k}" if path else k
            if props is not None and k in props:
                _walk(v[k], props[k], schemas, sub, out, prune)
            elif isinstance(addl, dict):
                _walk(v[k], addl, schemas, sub, out, prune)
            elif props is not None and addl is not True:
                out.append(sub)
                if prune:
                    del v[k]
    elif isinstance(v, list) and isinstance(s.get("items"), dict):
        for i, x in enumerate(v):
            _walk(x, s["items"], schemas, f"{path}[{i}]", out, prune)


# ------------------------------------------------------------------ the request's fieldValidation
_ctx = threading.local()
MODES = ("Strict", "Warn", "Ignore")


def duplicate_fields(body: bytes) -> list[str]:
    """Paths of the keys a JSON body repeats (`spec.replicas`); the last one is what counts, as in Go."""
    marks: dict[int, list[str]] = {}

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        dups = []
        for k, v in pairs:
            if k in out and k not in dups:
                dups.append(k)
            out[k] = v
        if dups:
            marks[id(out)] = dups
        return out

    try:
        doc = json.loads(body, object_pairs_hook=hook)
    except ValueError:
        return []
    found: list[str] = []

    def walk(v: Any, path: str) -> None:
        if isinstance(v, dict):
            found.extend(f"{path}.{k}" if path else k for k in marks.get(id(v), []))
            for k, x in v.items():
                walk(x, f"{path}.{k}" if path else k)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]")

    if marks:
        walk(doc, "")
    return found


def begin(query: dict[str, str], minor: int, body: bytes = b"") -> None:
    """Called per request: remembers its fieldValidation directive (None: not validating)."""
    _ctx.warnings = []
    _ctx.duplicates = []
    if minor < FIRST_VALIDATING_MINOR:
        _ctx.mode = None
        return
    mode = query.get("fieldValidation") or "Warn"
    if mode not in MODES:
        from .errors import bad_request

        raise bad_request(f'fieldValidation {mode} is invalid, valid values are: Ignore, Warn, Strict')
    _ctx.mode = mode
    if body[:1] == b"{" and mode != "Ignore":
        _ctx.duplicates = duplicate_fields(body)


def end() -> list[str]:
    warnings = list(getattr(_ctx, "warnings", None) or [])
    _ctx.mode = None
    _ctx.warnings = []
    _ctx.duplicates = []
    return warnings


def warning_header(warnings: list[str]) -> dict[str, str]:
    if not warnings:
        return {}
    return {"Warning": ", ".join('299 - ' + json.dumps(w) for w in warnings)}


def respond(resp: Any) -> Any:
    """Adds the request's warnings to its response."""
    warnings = list(getattr(_ctx, "warnings", None) or [])
    if warnings:
        _ctx.warnings = []
        resp.headers.update(warning_header(warnings))
    return resp


def check(cluster: Any, rt: Any, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """Applies the request's fieldValidation to `obj` (the body, or a patch's result) in place.

    Unknown fields already in `old` (the stored object) are not reported again."""
    mode = getattr(_ctx, "mode", None)
    _ctx.mode = None  # once per request: writes the controllers make meanwhile are not the client's
    if mode is None or not isinstance(obj, dict):
        return
    found = schema_for(cluster, rt, obj)
    if found is None:
        return
    schema, schemas = found
    unknown = unknown_fields(obj, schema, schemas)
    if old is not None and unknown:
        before = set(unknown_fields(old, schema, schemas))
        unknown = [u for u in unknown if u not in before]
    dups = list(getattr(_ctx, "duplicates", None) or [])
    if not unknown and not dups:
        return
    problems = [f'duplicate field "{d}"' for d in dups] + [f'unknown field "{u}"' for u in unknown]
    if mode == "Strict":
        from .errors import bad_request

        version = (obj.get("apiVersion") or "").rsplit("/", 1)[-1]
        listed = ", ".join(problems)
        raise bad_request(f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: strict decoding error: {listed}')
    unknown_fields(obj, schema, schemas, prune=True)
    if mode == "Warn":
        _ctx.warnings.extend(problems)


def schema_for(cluster: Any, rt: Any, obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    defs = definitions(cluster.minor)
    if defs is None:
        return None
    api_version = obj.get("apiVersion") or ""
    version = api_version.rsplit("/", 1)[-1]
    if rt.custom:
        crd = find_crd(cluster, rt)
        if crd is None:
            return None
        return crd_schema(crd, version) or {}, defs.schemas
    name = defs.by_gvk.get((rt.group, version, rt.kind))
    if name is None:
        return None
    return defs.schemas[name], defs.schemas


def find_crd(cluster: Any, rt: Any) -> dict[str, Any] | None:
    for crd in cluster.store.objects("customresourcedefinitions.apiextensions.k8s.io"):
        spec = crd.get("spec") or {}
        if spec.get("group") == rt.group and (spec.get("names") or {}).get("kind") == rt.kind:
            return crd
    return None
