"""The cluster config document: its schema, defaults, and errors that name the field and line."""
from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from portal.api import yaml as api_yaml
from portal.api.parsers import unstorable

SUPPORTED_VERSIONS: dict[str, list[str]] = {
    "rke": ["v1.15.11", "v1.15.12", "v1.16.8", "v1.16.9", "v1.16.13", "v1.17.4", "v1.17.5", "v1.17.9", "v1.18.6"],
    "k3s": ["v1.17.4+k3s1", "v1.17.5+k3s1", "v1.17.9+k3s1", "v1.18.2+k3s1", "v1.18.6+k3s1"],
}

_COUNT_OR_PERCENT = re.compile(r"^(\d+)%?$")


class ConfigError(ValueError):
    """A config document that does not fit the schema; ``errors`` lists (path, line, message)."""

    def __init__(self, errors: list[tuple[str, int | None, str]]):
        self.errors = errors
        super().__init__("; ".join(self.format(e) for e in errors))

    @staticmethod
    def format(error: tuple[str, int | None, str]) -> str:
        path, line, message = error
        where = f" (line {line})" if line else ""
        return f"{path or 'document'}{where}: {message}"

    def by_field(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for path, line, message in self.errors:
            out.setdefault(path or "document", []).append(f"line {line}: {message}" if line else message)
        return out


@dataclass(frozen=True)
class Field:
    types: tuple[type, ...]
    default: Any = None
    check: Callable[[Any], str | None] | None = None
    help: str = ""


def _count_or_percent(value: Any) -> str | None:
    if not _COUNT_OR_PERCENT.match(str(value)):
        return 'must be a count such as "1" or a percentage such as "10%"'
    if str(value).endswith("%") and not 0 < int(str(value)[:-1]) <= 100:
        return "a percentage must be between 1% and 100%"
    if not str(value).endswith("%") and int(value) < 1:
        return "must be at least 1"
    return None


def _positive(value: Any) -> str | None:
    return None if value >= 1 else "must be at least 1"


def _grace(value: Any) -> str | None:
    return None if value >= -1 else "must be -1 (use the pod's own) or a number of seconds"


def _extra_args(value: Any) -> str | None:
    """Flag names and one-line values: they become ``--kubelet-arg=name=value`` on every node."""
    if not all(isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items()):
        return "must map flag names to values, e.g. max-pods: \"250\""
    from clusters.nodeops.plans import kubelet_arg_flags

    try:
        kubelet_arg_flags(value)
    except ValueError as exc:
        return str(exc)
    return None


SCHEMA: dict[str, Any] = {
    "kubernetes_version": Field((str,), help="Kubernetes version the cluster should run"),
    "services": {
        "kubelet": {
            "extra_args": Field((dict,), {}, _extra_args, "Extra kubelet flags, e.g. max-pods"),
        },
    },
    "upgrade_strategy": {
        "mode": Field((str,), "rolling", lambda v: None if v in ("rolling", "parallel") else
                      'must be "rolling" (zero downtime) or "parallel" (every node of a role at once)'),
        "max_unavailable_controlplane": Field((str, int), "1", _count_or_percent),
        "max_unavailable_worker": Field((str, int), "10%", _count_or_percent),
        "drain": Field((bool,), False),
        "node_upgrade_timeout": Field((int,), 600, _positive, "Seconds a node may take to be Ready on the new version"),
        "node_drain_input": {
            "force": Field((bool,), False),
            "ignore_daemonsets": Field((bool,), True),
            "delete_local_data": Field((bool,), False),
            "grace_period": Field((int,), -1, _grace),
            "timeout": Field((int,), 120, _positive),
        },
    },
    "k3s_upgrade_strategy": {
        "server_concurrency": Field((int,), 1, _positive, "Control Plane Concurrency"),
        "worker_concurrency": Field((int,), 1, _positive, "Worker Concurrency"),
        "drain_server_nodes": Field((bool,), False, help="Drain Control Plane Nodes"),
        "drain_worker_nodes": Field((bool,), False, help="Drain Worker Nodes"),
    },
    "etcd_backup": {
        "enabled": Field((bool,), True),
        "interval_hours": Field((int,), 12, _positive),
        "retention": Field((int,), 6, _positive),
        "target": Field((str, type(None)), None, help="Name of the backup target; empty for the default"),
    },
}


def _lines(text: str) -> dict[str, int]:
    """Map dotted paths to the line each key is on, for error messages."""
    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines[path] = key.start_mark.line + 1
                walk(value, path)

    try:
        walk(yaml.compose(text, Loader=api_yaml.LOADER), "")
    except yaml.YAMLError:
        pass
    return lines


MAX_INT = 2**31 - 1


def _storable(value: Any) -> str | None:
    """Values the schema's types allow but the database or the upgrade code could not take."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return f"must be at most {MAX_INT}"
    if isinstance(value, str) and len(value) > 1000:
        return "is longer than 1000 characters"
    return unstorable(value)


def defaults() -> dict[str, Any]:
    def build(schema: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, spec in schema.items():
            if isinstance(spec, dict):
                out[key] = build(spec)
            elif spec.default is not None or key != "kubernetes_version":
                out[key] = copy.deepcopy(spec.default)
        return out

    return build(SCHEMA)


MAX_CONFIG_CHARS = 64 * 1024
MAX_CONFIG_DEPTH = 16
EMPTY_CONFIG = ("the config is empty: write the settings as a YAML mapping, e.g. kubernetes_version: v1.16.8 "
                "(nothing was saved)")


def parse_yaml(text: str) -> dict[str, Any]:
    """The YAML text as a mapping; an empty document, ``null``, a scalar or a list is refused, not defaulted.

    (An empty document used to save a version that reset every setting.) Size and nesting are limited
    before the document is built.
    """
    if not isinstance(text, str):
        raise ConfigError([("", None, "the config must be YAML text")])
    if len(text) > MAX_CONFIG_CHARS:
        raise ConfigError([("", None, f"the config is {len(text) // 1024} KiB; at most "
                                      f"{MAX_CONFIG_CHARS // 1024} KiB is accepted")])
    try:
        doc = api_yaml.safe_load(text, max_depth=MAX_CONFIG_DEPTH, max_nodes=10_000)
    except (yaml.YAMLError, ValueError) as exc:
        line, problem = api_yaml.describe_error(exc)
        raise ConfigError([("", line, f"not valid YAML: {problem}")]) from None
    if doc is None:
        raise ConfigError([("", None, EMPTY_CONFIG)])
    if not isinstance(doc, dict):
        raise ConfigError([("", 1, f"the config must be a mapping of settings, not {_kind(doc)}")])
    return doc


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a text"
    if isinstance(value, bool):
        return "true/false"
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def validate(doc: dict[str, Any], *, kind: str, current_version: str = "", source: str = "") -> dict[str, Any]:
    """Check a document against the schema; return it with defaults filled in, or raise ConfigError."""
    if not isinstance(doc, dict):
        raise ConfigError([("", None, "the config must be a mapping of settings")])
    if not doc:
        raise ConfigError([("", None, EMPTY_CONFIG)])
    lines = _lines(source) if source else {}
    errors: list[tuple[str, int | None, str]] = []

    def check(value: Any, schema: dict[str, Any], prefix: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            errors.append((prefix, lines.get(prefix), "must be a mapping"))
            return {}
        out: dict[str, Any] = {}
        for key in value:
            if key not in schema:
                path = f"{prefix}.{key}" if prefix else str(key)
                errors.append((path, lines.get(path), f"unknown setting; expected one of {', '.join(schema)}"))
        for key, spec in schema.items():
            path = f"{prefix}.{key}" if prefix else key
            if isinstance(spec, dict):
                out[key] = check(value.get(key) or {}, spec, path)
                continue
            if key not in value or value[key] is None and type(None) not in spec.types:
                if spec.default is not None or type(None) in spec.types:
                    out[key] = copy.deepcopy(spec.default)
                continue
            item = value[key]
            if not isinstance(item, spec.types) or (isinstance(item, bool) and bool not in spec.types):
                names = " or ".join("null" if t is type(None) else {"str": "text", "int": "a whole number",
                                    "bool": "true or false", "dict": "a mapping"}.get(t.__name__, t.__name__)
                                    for t in spec.types)
                errors.append((path, lines.get(path), f"must be {names}, not {item!r}"))
                continue
            problem = _storable(item) or (spec.check(item) if spec.check and item is not None else None)
            if problem:
                errors.append((path, lines.get(path), problem))
                continue
            out[key] = str(item) if spec.types[0] is str and isinstance(item, int) else item
        return out

    result = check(doc, SCHEMA, "")
    version = result.get("kubernetes_version") or current_version
    if not version:
        errors.append(("kubernetes_version", lines.get("kubernetes_version"), "is required"))
    elif kind in SUPPORTED_VERSIONS:
        if version not in SUPPORTED_VERSIONS[kind] and version != current_version:
            errors.append(("kubernetes_version", lines.get("kubernetes_version"),
                           f"{version} is not a supported {kind} version; choose one of "
                           f"{', '.join(SUPPORTED_VERSIONS[kind])}"))
    elif current_version and version != current_version:
        errors.append(("kubernetes_version", lines.get("kubernetes_version"),
                       f"an imported cluster's version is managed outside Corral (it runs {current_version})"))
    result["kubernetes_version"] = version
    if kind != "k3s":
        # The k3s section means nothing to other kinds: refused when set, left out when default (or absent).
        if doc.get("k3s_upgrade_strategy") and result.get("k3s_upgrade_strategy") != defaults()["k3s_upgrade_strategy"]:
            errors.append(("k3s_upgrade_strategy", lines.get("k3s_upgrade_strategy"),
                           f"only k3s clusters take this section; this is a {kind} cluster"))
        result.pop("k3s_upgrade_strategy", None)
    if errors:
        raise ConfigError(errors)
    return result


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
