"""Server-side apply and `metadata.managedFields`, as kube-apiserver's field manager does it.

Field sets are Python sets of paths; a path is a tuple of fieldsV1 path elements
(`f:name`, `k:{"name":"x"}` for items of lists with merge keys, `v:"x"` for set
lists).  The structural schema is a table for the common built-ins (lists keyed by
their `x-kubernetes-list-map-keys`, set lists, atomic maps); unknown lists are atomic,
unknown objects are granular.

Only writes a client asked for are tracked (the request's target object); the
simulated controllers' own writes keep the object's managedFields as they are.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import ApiError
from .util import now_iso

if TYPE_CHECKING:
    from .apiserver import ApiServer, Request
    from .resources import ResourceType

APPLY = "application/apply-patch+yaml"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# lists of objects keyed by their list-map keys (k8s.io/api +listMapKey / patchMergeKey)
LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",), "hostAliases": ("ip",), "conditions": ("type",), "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"), "resourceClaims": ("name",),
    "secrets": ("name",), "volumeClaimTemplates": ("metadata",),
}
KEY_DEFAULTS = {"protocol": "TCP"}
SET_LISTS = {"finalizers"}
ATOMIC_MAPS = {"selector", "nodeSelector", "roleRef", "matchLabels", "matchExpressions"}
# ignored on every write (stripMetaManager), plus status or spec depending on the subresource
STRIPPED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                 "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}
# the zero value of a few Go types: struct fields that exist (and are not "added") in a new object
ZERO: dict[str, dict[str, Any]] = {
    "Deployment": {"spec": {"strategy": {}, "template": {"metadata": {}, "spec": {"containers": None}}}},
    "ReplicaSet": {"spec": {"template": {"metadata": {}, "spec": {"containers": None}}}},
    "DaemonSet": {"spec": {"updateStrategy": {}, "template": {"metadata": {}, "spec": {"containers": None}}}},
    "StatefulSet": {"spec": {"updateStrategy": {}, "template": {"metadata": {}, "spec": {"containers": None}}}},
    "Job": {"spec": {"template": {"metadata": {}, "spec": {"containers": None}}}},
    "Pod": {"spec": {"containers": None}},
    "Service": {"spec": {}},
}

Path = tuple[str, ...]


# ------------------------------------------------------------------ request context
@dataclass
class Context:
    manager: str
    key: str
    ns: str
    name: str | None
    subresource: str | None
    explicit: bool = False  # fieldManager was given (apply requires it)
    applying: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_local = threading.local()


def manager_of(req: Request) -> str:
    """fieldManager, else the User-Agent up to its first '/' (prefixFromUserAgent)."""
    m = req.query.get("fieldManager", "")
    if m:
        return m
    ua = req.headers.get("user-agent", "").split("/")[0]
    return "".join(ch for ch in ua if ch.isprintable())[:128]


def begin(req: Request, rt: ResourceType, ns: str | None, name: str | None, sub: str | None) -> None:
    if req.method in ("POST", "PUT", "PATCH") and sub not in ("eviction", "binding", "log"):
        _local.ctx = Context(manager_of(req), rt.key, ns or "", name, sub, bool(req.query.get("fieldManager")))
    else:
        _local.ctx = None


def end() -> None:
    _local.ctx = None


def _ctx_for(rt: ResourceType, obj: dict[str, Any]) -> Context | None:
    ctx: Context | None = getattr(_local, "ctx", None)
    if ctx is None or ctx.key != rt.key:
        return None
    meta = obj.get("metadata") or {}
    if ctx.name is not None and (meta.get("name") != ctx.name or (meta.get("namespace") or "") != (ctx.ns if rt.namespaced else "")):
        return None
    return ctx


# ------------------------------------------------------------------ schema
def _list_kind(path: Path, fname: str, items: list[Any]) -> tuple[str, tuple[str, ...]]:
    if fname in SET_LISTS:
        return "set", ()
    if fname == "ports":
        keys: tuple[str, ...] | None = ("containerPort", "protocol") if len(path) >= 2 and path[-2].startswith("k:") \
            else ("port", "protocol")
    else:
        keys = LIST_KEYS.get(fname)
    if keys is None or not all(isinstance(x, dict) for x in items):
        return "atomic", ()
    return "map", keys


def _item_pe(kind: str, keys: tuple[str, ...], item: Any) -> str:
    if kind == "set":
        return "v:" + json.dumps(item, separators=(",", ":"))
    key = {}
    for k in keys:
        v = item.get(k, KEY_DEFAULTS.get(k))
        if v is not None:
            key[k] = v
    return "k:" + json.dumps(key, separators=(",", ":"), sort_keys=True)


def _atomic_map(fname: str) -> bool:
    return fname in ATOMIC_MAPS


def _top_items(rt: ResourceType, obj: dict[str, Any], subresource: str | None) -> list[tuple[str, Any]]:
    out = []
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if rt.has_status and ((k == "status") != (subresource == "status")):
            continue
        if subresource == "status" and k != "status":
            continue
        if k == "metadata" and isinstance(v, dict):
            v = {mk: mv for mk, mv in v.items() if mk not in STRIPPED_META}
        out.append((k, v))
    return out


# ------------------------------------------------------------------ field sets
def field_set(rt: ResourceType, obj: dict[str, Any], subresource: str | None = None) -> set[Path]:
    """ToFieldSet of an applied configuration: leaves, list items, atomic values, empty maps."""
    out: set[Path] = set()
    for k, v in _top_items(rt, obj, subresource):
        if k == "metadata" and not v:
            continue
        _fs(v, ("f:" + k,), k, out)
    return out


def _fs(v: Any, p: Path, fname: str, out: set[Path]) -> None:
    if isinstance(v, dict):
        if not v or _atomic_map(fname):
            out.add(p)
            return
        for k, x in v.items():
            _fs(x, p + ("f:" + k,), k, out)
    elif isinstance(v, list):
        kind, keys = _list_kind(p, fname, v)
        if kind == "atomic":
            out.add(p)
            return
        for item in v:
            q = p + (_item_pe(kind, keys, item),)
            out.add(q)
            if kind == "map":
                for k, x in item.items():
                    _fs(x, q + ("f:" + k,), k, out)
    else:
        out.add(p)


def _all_paths(v: Any, p: Path, fname: str, out: set[Path]) -> None:
    """Every node of a value that was not there before (compare's Added): all members."""
    out.add(p)
    if isinstance(v, dict) and v and not _atomic_map(fname):
        for k, x in v.items():
            _all_paths(x, p + ("f:" + k,), k, out)
    elif isinstance(v, list):
        kind, keys = _list_kind(p, fname, v)
        if kind == "atomic":
            return
        for item in v:
            q = p + (_item_pe(kind, keys, item),)
            out.add(q)
            if kind == "map":
                for k, x in item.items():
                    _all_paths(x, q + ("f:" + k,), k, out)


def compare(rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None) -> tuple[set[Path], set[Path], set[Path]]:
    """(added, modified, removed) between two objects, by the schema."""
    added: set[Path] = set()
    modified: set[Path] = set()
    removed: set[Path] = set()
    o = dict(_top_items(rt, old, subresource))
    n = dict(_top_items(rt, new, subresource))
    _cmp_map(o, n, (), "", added, modified, removed)
    return added, modified, removed


def _cmp(o: Any, n: Any, p: Path, fname: str, added: set[Path], modified: set[Path], removed: set[Path]) -> None:
    if isinstance(o, dict) and isinstance(n, dict) and (o or n) and not _atomic_map(fname):
        _cmp_map(o, n, p, fname, added, modified, removed)
        return
    if isinstance(o, list) and isinstance(n, list):
        kind, keys = _list_kind(p, fname, o + n)
        if kind != "atomic":
            oi = {_item_pe(kind, keys, x): x for x in o}
            ni = {_item_pe(kind, keys, x): x for x in n}
            for pe, x in ni.items():
                q = p + (pe,)
                if pe not in oi:
                    _all_paths_item(kind, x, q, added)
                elif kind == "map":
                    _cmp_map(oi[pe], x, q, fname, added, modified, removed)
            for pe, x in oi.items():
                if pe not in ni:
                    _all_paths_item(kind, x, p + (pe,), removed)
            return
    if o != n:
        modified.add(p)


def _all_paths_item(kind: str, item: Any, q: Path, out: set[Path]) -> None:
    out.add(q)
    if kind == "map":
        for k, x in item.items():
            _all_paths(x, q + ("f:" + k,), k, out)


def _cmp_map(o: dict[str, Any], n: dict[str, Any], p: Path, fname: str, added: set[Path], modified: set[Path],
             removed: set[Path]) -> None:
    for k, x in n.items():
        q = p + ("f:" + k,)
        if k not in o:
            _all_paths(x, q, k, added)
        else:
            _cmp(o[k], x, q, k, added, modified, removed)
    for k, x in o.items():
        if k not in n:
            _all_paths(x, p + ("f:" + k,), k, removed)


# ------------------------------------------------------------------ fieldsV1 encoding
def encode_set(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for p in paths:
        node = root
        for el in p:
            node = node.setdefault(el, {})
    for p in paths:
        node = root
        for el in p:
            node = node[el]
        if node and "." not in node:
            node["."] = {}
    return _sorted(root)


def _sorted(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted(node[k]) for k in sorted(node, key=lambda k: (k != ".", k))}


def decode_set(fields: Any, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    if not isinstance(fields, dict):
        return out
    for k, v in fields.items():
        if k == ".":
            out.add(prefix)
        elif not v:
            out.add(prefix + (k,))
        else:
            out |= decode_set(v, prefix + (k,))
    return out


def path_string(p: Path) -> str:
    """fieldpath.Path.String(): .spec.containers[name="x"].image"""
    s = ""
    for el in p:
        kind, _, rest = el.partition(":")
        if kind == "f":
            s += "." + rest
        elif kind == "k":
            key = json.loads(rest)
            s += "[" + ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in key.items()) + "]"
        elif kind == "v":
            s += "[=" + rest + "]"
        else:
            s += "[" + rest + "]"
    return s


# ------------------------------------------------------------------ managed entries
@dataclass
class Managed:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str
    fields: set[Path]

    def ident(self) -> tuple[str, str, str, str]:
        return (self.manager, self.operation, "" if self.operation == "Apply" else self.api_version, self.subresource)

    def printed(self) -> str:
        s = json.dumps(self.manager)
        if self.subresource:
            s += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            s += f" using {self.api_version}"
        return s

    def encode(self) -> dict[str, Any]:
        out = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version, "time": self.time,
               "fieldsType": "FieldsV1", "fieldsV1": encode_set(self.fields)}
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def decode(obj: dict[str, Any] | None) -> list[Managed]:
    out = []
    for e in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
        if not isinstance(e, dict) or not e.get("manager"):
            continue
        out.append(Managed(e["manager"], e.get("operation", "Update"), e.get("apiVersion", ""), e.get("subresource", ""),
                           e.get("time", ""), decode_set(e.get("fieldsV1"))))
    return out


def store_managed(obj: dict[str, Any], entries: list[Managed]) -> None:
    entries = [e for e in entries if e.fields]
    entries.sort(key=lambda e: (e.operation, e.time, e.manager, e.api_version, e.subresource))
    meta = obj.setdefault("metadata", {})
    if entries:
        meta["managedFields"] = [e.encode() for e in entries]
    else:
        meta.pop("managedFields", None)


def _entry(entries: list[Managed], ident: tuple[str, str, str, str]) -> Managed | None:
    return next((e for e in entries if e.ident() == ident), None)


# ------------------------------------------------------------------ hooks (called by ApiServer)
def on_create(api: ApiServer, rt: ResourceType, obj: dict[str, Any]) -> None:
    ctx = _ctx_for(rt, obj)
    if ctx is None or ctx.applying:
        return
    if not ctx.manager:
        obj["metadata"].pop("managedFields", None)
        return
    zero = copy.deepcopy(ZERO.get(rt.kind, {}))
    zero.setdefault("metadata", {})
    added, modified, _ = compare(rt, zero, obj, None)
    e = Managed(ctx.manager, "Update", api.api_version(rt), "", now_iso(), added | modified)
    store_managed(obj, [e])


def on_update(api: ApiServer, rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None) -> None:
    """After defaulting, before the write: track an ordinary update or patch."""
    om, nm = old.get("metadata") or {}, new.setdefault("metadata", {})
    ctx = _ctx_for(rt, new)
    user_set = "managedFields" in nm and nm.get("managedFields") != om.get("managedFields")
    if ctx is None or ctx.applying or not ctx.manager:
        if not user_set:
            if "managedFields" in om:
                nm["managedFields"] = om["managedFields"]
            else:
                nm.pop("managedFields", None)
        return
    sub = ctx.subresource or subresource or ""
    if sub not in ("status", "scale"):
        sub = ""
    entries = decode(new) if user_set and decode(new) else decode(old)
    if user_set and nm.get("managedFields") == [{}]:
        entries = []
    added, modified, removed = compare(rt, old, new, "status" if sub == "status" else None)
    changed = added | modified
    if not changed and not removed:
        store_managed(new, entries)
        return
    version = api.api_version(rt)
    ident = (ctx.manager, "Update", version, sub)
    for e in entries:
        if e.ident() != ident:
            e.fields = _without(e.fields - changed, removed)
    mine = _entry(entries, ident)
    if mine is None:
        mine = Managed(ctx.manager, "Update", version, sub, now_iso(), set())
        entries.append(mine)
    mine.fields = (_without(mine.fields, removed) | changed)
    mine.time = now_iso()
    store_managed(new, entries)


def _without(fields: set[Path], gone: set[Path]) -> set[Path]:
    """fields minus gone and minus everything under a gone list item or value."""
    if not gone:
        return fields
    return {p for p in fields if p not in gone and not any(p[:i] in gone for i in range(1, len(p)))}


# ------------------------------------------------------------------ apply
def require_manager(ctx: Context | None) -> None:
    if ctx is not None and not ctx.explicit:
        raise errors.invalid("PatchOptions", "meta.k8s.io", "",
                             [("FieldValueRequired", "fieldManager", "Required value: is required for apply patch")])


def apply(api: ApiServer, rt: ResourceType, live: dict[str, Any] | None, cfg: Any, force: bool,
          subresource: str | None = None) -> dict[str, Any]:
    """Merge an applied configuration into the live object (or a new one), with ownership,
    conflicts, removal of fields the manager dropped, and the managedFields result."""
    ctx: Context | None = getattr(_local, "ctx", None)
    if not isinstance(cfg, dict):
        raise errors.bad_request("error decoding YAML: the apply configuration must be an object")
    require_manager(ctx)
    manager = ctx.manager if ctx else "unknown"
    if ctx is not None:
        ctx.applying = True
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("metadata", {}).pop("managedFields", None)
    sub = subresource if subresource == "status" else ""
    version = api.api_version(rt)
    cfg_set = field_set(rt, cfg, subresource)
    now = now_iso()
    if live is None:
        obj = copy.deepcopy(cfg)
        store_managed(obj, [Managed(manager, "Apply", cfg.get("apiVersion") or version, sub, now, cfg_set)])
        return obj
    entries = decode(live)
    ident = (manager, "Apply", "", sub)
    mine = _entry(entries, ident)
    others = [e for e in entries if e.ident() != ident]
    merged = _merge(copy.deepcopy(live), cfg, (), "")
    if mine is not None:
        keep: set[Path] = cfg_set.union(*(e.fields for e in others))
        kept = {q[:i] for q in keep for i in range(1, len(q) + 1)}  # kept fields and their parents
        drop = {p for p in mine.fields - cfg_set if p not in kept}
        for p in sorted(drop, key=len):
            _remove(merged, p)
    added, modified, removed = compare(rt, live, merged, subresource)
    changed = added | modified
    conflicts = [(e, p) for e in others for p in sorted(e.fields & changed & cfg_set)]
    if conflicts and not force and manager == "kubectl":
        allowed = _last_applied_set(rt, live)
        if allowed is not None and all(p in allowed for _, p in conflicts):
            force = True  # lastAppliedManager: the upgrade from client-side apply
    if conflicts and not force:
        raise conflict_error(conflicts)
    taken = {p for _, p in conflicts}
    for e in others:
        e.fields = _without(e.fields - taken, removed)
    before = {e.ident(): e.fields for e in decode(live)}
    if mine is None:
        mine = Managed(manager, "Apply", cfg.get("apiVersion") or version, sub, now, set())
        entries.append(mine)
    mine.fields = cfg_set
    mine.api_version = cfg.get("apiVersion") or version
    if changed or removed or before != {e.ident(): e.fields for e in entries if e.fields}:
        mine.time = now  # a no-op apply leaves the object (and the entry's time) alone
    if manager == "kubectl" and LAST_APPLIED in ((live.get("metadata") or {}).get("annotations") or {}):
        last = copy.deepcopy(cfg)
        (last.get("metadata") or {}).get("annotations", {}).pop(LAST_APPLIED, None)
        merged["metadata"].setdefault("annotations", {})[LAST_APPLIED] = json.dumps(last, separators=(",", ":")) + "\n"
    store_managed(merged, entries)
    return merged


def _last_applied_set(rt: ResourceType, live: dict[str, Any]) -> set[Path] | None:
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        last = json.loads(text)
    except ValueError:
        return None
    if not isinstance(last, dict):
        return None
    # fields where the live object drifted from last-applied are real conflicts
    _, modified, removed = compare(rt, last, live, None)
    return field_set(rt, last) - modified - removed


def conflict_error(conflicts: list[tuple[Managed, Path]]) -> ApiError:
    causes = [{"type": "FieldManagerConflict", "message": f"conflict with {e.printed()}", "field": path_string(p)}
              for e, p in conflicts]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        msg = f"Apply failed with 1 conflict: conflict with {e.printed()}: {path_string(p)}"
    else:
        by: dict[str, list[str]] = {}
        for e, p in conflicts:
            by.setdefault(e.printed(), []).append(path_string(p))
        lines = []
        for m in sorted(by):
            lines.append(f"conflicts with {m}:")
            lines += [f"- {x}" for x in by[m]]
        msg = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", msg, {"causes": causes})


def _merge(live: Any, cfg: Any, p: Path, fname: str) -> Any:
    if isinstance(live, dict) and isinstance(cfg, dict) and not _atomic_map(fname):
        for k, v in cfg.items():
            if v is None:
                live.pop(k, None)
            elif k in live:
                live[k] = _merge(live[k], v, p + ("f:" + k,), k)
            else:
                live[k] = copy.deepcopy(v)
        return live
    if isinstance(live, list) and isinstance(cfg, list):
        kind, keys = _list_kind(p, fname, live + cfg)
        if kind == "set":
            return live + [x for x in cfg if x not in live]
        if kind == "map":
            out = list(live)
            index = {_item_pe(kind, keys, x): i for i, x in enumerate(out)}
            for item in cfg:
                pe = _item_pe(kind, keys, item)
                if pe in index:
                    out[index[pe]] = _merge(out[index[pe]], item, p + (pe,), fname)
                else:
                    out.append(copy.deepcopy(item))
            return out
    return copy.deepcopy(cfg)


def _remove(obj: Any, p: Path) -> None:
    """Remove one field, list item or set value from an object (missing parents: nothing);
    a list or map left empty goes too (omitempty)."""
    _remove_one(obj, p)
    for n in range(len(p) - 1, 1, -1):
        parent = _get(obj, p[:n])
        if parent in ([], {}):
            _remove_one(obj, p[:n])
        else:
            break


_MISSING = object()


def _get(obj: Any, p: Path) -> Any:
    cur = obj
    for el in p:
        kind, _, rest = el.partition(":")
        if kind == "f" and isinstance(cur, dict) and rest in cur:
            cur = cur[rest]
        elif kind in ("k", "v") and isinstance(cur, list):
            cur = next((x for x in cur if _item_matches(kind, rest, x)), _MISSING)
        else:
            return _MISSING
    return cur


def _item_matches(kind: str, rest: str, x: Any) -> bool:
    if kind == "v":
        return bool(x == json.loads(rest))
    key = json.loads(rest)
    return isinstance(x, dict) and all(x.get(k, KEY_DEFAULTS.get(k)) == v for k, v in key.items())


def _remove_one(obj: Any, p: Path) -> None:
    cur = obj
    for i, el in enumerate(p):
        last = i == len(p) - 1
        kind, _, rest = el.partition(":")
        if kind == "f":
            if not isinstance(cur, dict) or rest not in cur:
                return
            if last:
                del cur[rest]
                return
            cur = cur[rest]
        elif isinstance(cur, list):
            if kind == "k":
                key = json.loads(rest)
                idx = next((j for j, x in enumerate(cur) if isinstance(x, dict)
                            and all(x.get(k, KEY_DEFAULTS.get(k)) == v for k, v in key.items())), None)
            else:
                val = json.loads(rest)
                idx = next((j for j, x in enumerate(cur) if x == val), None)
            if idx is None:
                return
            if last:
                del cur[idx]
                return
            cur = cur[idx]
        else:
            return
