"""Label and field selectors, parsed the way apimachinery parses them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .errors import bad_request

LabelTest = Callable[[Mapping[str, str]], bool]

_TOKEN = re.compile(r"\s*(!=|==|=|!|\(|\)|,|[^\s!=(),]+)")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise bad_request(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_label_selector(text: str | None) -> LabelTest | None:
    """Parse `app=web,tier in (a,b),!legacy` into a predicate over labels."""
    if not text or not text.strip():
        return None
    toks = _tokens(text)
    reqs: list[LabelTest] = []
    i = 0

    def need(cond: bool) -> None:
        if not cond:
            raise bad_request(f"unable to parse requirement: found unexpected token in {text!r}")

    while i < len(toks):
        if toks[i] == "!":
            need(i + 1 < len(toks))
            key = toks[i + 1]
            reqs.append(lambda labels, k=key: k not in labels)
            i += 2
        else:
            key = toks[i]
            op = toks[i + 1] if i + 1 < len(toks) else ","
            if op in ("=", "==", "!="):
                need(i + 2 < len(toks))
                val = toks[i + 2]
                if val == ",":
                    val, i = "", i + 2
                else:
                    i += 3
                if op == "!=":
                    reqs.append(lambda labels, k=key, v=val: labels.get(k) != v)
                else:
                    reqs.append(lambda labels, k=key, v=val: labels.get(k) == v)
            elif op in ("in", "notin"):
                need(i + 2 < len(toks) and toks[i + 2] == "(")
                j = i + 3
                values: set[str] = set()
                while j < len(toks) and toks[j] != ")":
                    if toks[j] != ",":
                        values.add(toks[j])
                    j += 1
                need(j < len(toks))
                if op == "in":
                    reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) in vs)
                else:
                    reqs.append(lambda labels, k=key, vs=frozenset(values): labels.get(k) not in vs)
                i = j + 1
            else:
                reqs.append(lambda labels, k=key: k in labels)
                i += 1
        if i < len(toks):
            need(toks[i] == ",")
            i += 1
    return lambda labels: all(r(labels) for r in reqs)


def selector_from_match(sel: Mapping[str, Any] | None) -> LabelTest:
    """A predicate from a LabelSelector object ({matchLabels, matchExpressions}).

    An empty selector matches everything, as for Deployments and PDBs.
    """
    if not sel:
        return lambda labels: True
    ml = dict(sel.get("matchLabels") or {})
    exprs = list(sel.get("matchExpressions") or [])

    def test(labels: Mapping[str, str]) -> bool:
        for k, v in ml.items():
            if labels.get(k) != v:
                return False
        for e in exprs:
            key, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
            if op == "In" and labels.get(key) not in vals:
                return False
            if op == "NotIn" and key in labels and labels[key] in vals:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True

    return test


def parse_field_selector(text: str | None, supported: tuple[str, ...]) -> list[tuple[str, str, bool]] | None:
    """Parse `spec.nodeName=n1,status.phase!=Failed` into (field, value, equal) terms.

    Only fields the resource supports are accepted, like the real server's
    "field label not supported" error.
    """
    if not text or not text.strip():
        return None
    terms: list[tuple[str, str, bool]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            field, value = part.split("!=", 1)
            eq = False
        elif "==" in part:
            field, value = part.split("==", 1)
            eq = True
        elif "=" in part:
            field, value = part.split("=", 1)
            eq = True
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field = field.strip()
        if field not in supported and field not in ("metadata.name", "metadata.namespace"):
            raise bad_request(f"field label not supported: {field}")
        terms.append((field, value.strip(), eq))
    return terms
