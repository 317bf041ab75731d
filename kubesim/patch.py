"""The three patch types of the Kubernetes API.

Strategic merge patch needs each list's merge key, which the real server reads
from Go struct tags; the keys below are those tags for the fields clients patch.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request

# patchMergeKey per list field name (the Go struct tags of k8s.io/api).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "addresses": "type",
    "hostAliases": "ip",
    "secrets": "name",
    "topologySpreadConstraints": "topologyKey",
    "ephemeralContainerStatuses": "name",
}
# lists with patchStrategy "merge" of primitives
PRIMITIVE_MERGE = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _ptr(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: path {p} missing")
            cur = cur[p]
        elif isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise ApiError(422, "Invalid", f"the server rejected our request: index {p} out of range") from None
        else:
            raise ApiError(422, "Invalid", "the server rejected our request: path does not exist")
    return cur


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch; a failed `test` is a 422 like the real server."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        parts = _ptr(op.get("path", ""))
        if kind in ("add", "replace", "test"):
            value = copy.deepcopy(op.get("value"))
        if kind == "test":
            if _walk(doc, parts) != value:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: testing value {op.get('path')} failed: test failed")
            continue
        if kind in ("move", "copy"):
            src = _ptr(op.get("from", ""))
            value = copy.deepcopy(_walk(doc, src))
            if kind == "move":
                doc = _remove(doc, src)
            kind = "add"
        if not parts:
            if kind == "remove":
                raise bad_request("cannot remove the root")
            doc = value
            continue
        parent = _walk(doc, parts[:-1])
        last = parts[-1]
        if kind == "add":
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if idx > len(parent):
                    raise ApiError(422, "Invalid", "the server rejected our request: add index out of bounds")
                parent.insert(idx, value)
            elif isinstance(parent, dict):
                parent[last] = value
            else:
                raise ApiError(422, "Invalid", "the server rejected our request: add to a non-container")
        elif kind == "replace":
            _walk(doc, parts)  # must exist
            if isinstance(parent, list):
                parent[int(last)] = value
            else:
                parent[last] = value
        elif kind == "remove":
            doc = _remove(doc, parts)
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    _walk(doc, parts)
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
    return doc


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        for it in items:
            if isinstance(it, dict):
                return "containerPort" if "containerPort" in it else "port"
        return None
    return MERGE_KEYS.get(field)


def strategic_merge(original: Any, patch: Any) -> Any:
    """Strategic merge patch (with $patch, $retainKeys, $setElementOrder and
    $deleteFromPrimitiveList directives) applied to a copy of `original`."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    return _smp_map(copy.deepcopy(original) if isinstance(original, dict) else {}, patch)


def _smp_map(orig: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        for k in list(orig):
            if k not in retain:
                del orig[k]
    orders: dict[str, list[Any]] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(orig.get(field), list):
                orig[field] = [x for x in orig[field] if x not in (v or [])]
            continue
        if v is None:
            orig.pop(k, None)
            continue
        cur = orig.get(k)
        if isinstance(v, dict):
            merged = _smp_map(cur if isinstance(cur, dict) else {}, v)
            if merged is None:
                orig.pop(k, None)
            else:
                orig[k] = merged
        elif isinstance(v, list):
            orig[k] = _smp_list(k, cur if isinstance(cur, list) else [], v)
        else:
            orig[k] = copy.deepcopy(v)
    for field, order in orders.items():
        if isinstance(orig.get(field), list):
            orig[field] = _apply_order(field, orig[field], order)
    return orig


def _smp_list(field: str, orig: list[Any], patch: list[Any]) -> list[Any]:
    if field in PRIMITIVE_MERGE:
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    key = _merge_key(field, orig + patch)
    if key is None or not all(isinstance(x, dict) for x in patch):
        if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
            return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
        return copy.deepcopy(patch)
    if any(x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if "$patch" not in x]
    out = [copy.deepcopy(x) for x in orig]
    for item in patch:
        kv = item.get(key)
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_smp_map({}, item) or {})
        else:
            out[idx] = _smp_map(out[idx], item) or {}
    return out


def _apply_order(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(field, items)
    if key is None:
        if not all(not isinstance(x, dict) for x in items):
            return items
        rank = {v: i for i, v in enumerate(order)}
    else:
        rank = {o.get(key): i for i, o in enumerate(order) if isinstance(o, dict)}

    def pos(x: Any) -> tuple[int, int]:
        k = x.get(key) if key and isinstance(x, dict) else x
        try:
            return (0, rank[k]) if k in rank else (1, 0)
        except TypeError:
            return (1, 0)

    return sorted(items, key=pos)
