"""Request bodies within limits: size, nesting depth, UTF-8, and only values the database can store.

A hostile body must cost little and end in a 4xx: the size is checked before reading, the depth
before parsing, and nothing that parsed can make the database or a recursive walk fail later.
"""
from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_DEPTH = 64

_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKET_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "request_too_large"


def max_body_bytes() -> int:
    return int(getattr(settings, "API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


def max_depth() -> int:
    return int(getattr(settings, "API_MAX_NESTING_DEPTH", DEFAULT_MAX_DEPTH))


def too_large(size: int | None = None) -> RequestTooLarge:
    limit = max_body_bytes()
    got = f" ({size} bytes)" if size else ""
    return RequestTooLarge(f"The request body is too large{got}: at most {limit} bytes ({limit // 1024} KiB) are accepted.")


def read_body(stream, parser_context: dict | None = None) -> str:
    """The body as text: at most ``API_MAX_BODY_BYTES`` (413 beyond), UTF-8 only (400 otherwise).

    Reads one byte past the limit rather than trusting Content-Length, which a client may leave out.
    """
    limit = max_body_bytes()
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise too_large()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"The body is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                         "send UTF-8 text.") from None


def json_depth(text: str) -> int:
    """Deepest nesting of arrays and objects, counted on the text without parsing it (C-speed scans)."""
    brackets = _NOT_BRACKETS.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_DELTA.__getitem__, brackets)), default=0)


def unstorable(value: Any, depth_limit: int = DEFAULT_MAX_DEPTH) -> str | None:
    """Why a parsed value cannot be stored as it is (NUL characters, lone surrogates, NaN), or None.

    PostgreSQL refuses NUL in text and JSON, and UTF-8 has no surrogates: without this check such values
    would pass validation and fail inside the database with a 500. Walks without recursion.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "text must not contain NUL characters (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text must not contain unpaired surrogates (\\ud800-\\udfff)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, dict):
            if depth > depth_limit:
                return f"nested deeper than {depth_limit} levels"
            stack.extend((k, depth) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            if depth > depth_limit:
                return f"nested deeper than {depth_limit} levels"
            stack.extend((v, depth + 1) for v in item)
    return None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


class JSONParser(BaseParser):
    """``application/json`` within limits; every refusal is a ParseError (400) or RequestTooLarge (413)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        text = read_body(stream, parser_context)
        limit = max_depth()
        # Cheap pre-check: only a text with more brackets than the limit can be nested that deep.
        if text.count("[") + text.count("{") > limit and json_depth(text) > limit:
            raise ParseError(f"JSON parse error: nested deeper than {limit} levels.")
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except RecursionError:
            raise ParseError(f"JSON parse error: nested deeper than {limit} levels.") from None
        except ValueError as exc:  # JSONDecodeError, digits beyond Python's limit, NaN/Infinity
            raise ParseError(f"JSON parse error: {exc}") from None
        problem = unstorable(data, limit)
        if problem:
            raise ParseError(f"JSON parse error: {problem}.")
        return data
