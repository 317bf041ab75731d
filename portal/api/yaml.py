"""YAML in and out of the API, for config documents ("Edit as YAML" over HTTP).

Every YAML text from outside goes through :func:`safe_load`: the event stream is scanned for nesting depth
and alias expansion before a document is built, so a hostile text costs milliseconds and never recurses.
"""
from __future__ import annotations

from typing import Any

import yaml
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from portal.api.parsers import read_body

# libyaml when present: scanning and loading cost a fraction of the pure-Python parser's time.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_DEPTH = 64
MAX_NODES = 100_000  # counting every alias as the nodes it stands for ("billion laughs")
PRECISE_ERRORS_UP_TO = 64 * 1024

_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


class YAMLLimitError(ValueError):
    """A YAML text nested too deep or expanding to too many nodes; refused before it is built."""


def check_limits(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES, loader=LOADER) -> None:
    """Walk the event stream (no document is built) and stop at the first limit crossed.

    Raises YAMLLimitError for a limit, yaml.YAMLError for text that does not parse.
    """
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, node count when it opened)
    sizes: dict[str, int] = {}
    nodes = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, _OPEN):
            open_nodes.append((event.anchor, nodes))
            nodes += 1
            if len(open_nodes) > max_depth:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise YAMLLimitError(f"nested deeper than {max_depth} levels" + (f" at line {line}" if line else ""))
        elif isinstance(event, _CLOSE):
            anchor, started = open_nodes.pop()
            if anchor:
                sizes[anchor] = nodes - started
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes and any(anchor == event.anchor for anchor, _ in open_nodes):
                raise YAMLLimitError(f"alias *{event.anchor} refers to a node that contains it")
            nodes += sizes.get(event.anchor, 1)
        if nodes > max_nodes:
            raise YAMLLimitError(f"expands to more than {max_nodes} values (counting what aliases stand for)")


def safe_load(text: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load`` within limits. Raises yaml.YAMLError or ValueError, both with a message fit to show.

    ValueError also covers what PyYAML's constructors let through (a date such as 2020-13-45, ``!!int x``).
    """
    try:
        try:
            check_limits(text, max_depth=max_depth, max_nodes=max_nodes)
            return yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own limit, met while looking ahead
                raise YAMLLimitError(f"nested deeper than {max_depth} levels") from None
            # Again with the pure-Python parser, whose error positions are more precise. It is ~25 times slower
            # and quadratic in flow nesting while it looks ahead, hence only for texts of the kind people type.
            if (LOADER is yaml.SafeLoader or len(text) > PRECISE_ERRORS_UP_TO
                    or text.count("[") + text.count("{") > max_depth):
                raise
            check_limits(text, max_depth=max_depth, max_nodes=max_nodes, loader=yaml.SafeLoader)
            return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - a safe loader
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, YAMLLimitError):
            raise
        raise ValueError(f"a value cannot be read: {exc}") from None


def describe_error(exc: Exception) -> tuple[int | None, str]:
    """(line, problem) for an error from :func:`safe_load`, for messages that point at the line."""
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.YAMLError):
        return line, str(getattr(exc, "problem", None) or exc)
    return line, str(exc)


class YAMLParser(BaseParser):
    """``application/yaml`` bodies: UTF-8, at most the API's body size, within the nesting limits."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        text = read_body(stream, parser_context)
        try:
            safe_load(text)
        except (yaml.YAMLError, ValueError) as exc:
            line, problem = describe_error(exc)
            where = f" at line {line}" if line else ""
            raise ParseError(f"Not valid YAML{where}: {problem}") from None
        return {"yaml": text}


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, str):
            return data.encode()
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).encode()
