"""Small helpers shared by the API server and the controllers."""

from __future__ import annotations

import hashlib
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's utilrand alphabet


def now_iso(at: float | None = None) -> str:
    """RFC 3339 seconds, as metav1.Time serialises."""
    return datetime.fromtimestamp(at if at is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def rand_suffix(n: int = 5, rng: random.Random | None = None) -> str:
    r = rng or random
    return "".join(r.choice(_NAME_CHARS) for _ in range(n))


def new_uid() -> str:
    return str(uuid.uuid4())


def short_hash(data: str, n: int = 10) -> str:
    """A pod-template-hash-like string: stable for the same input."""
    h = int(hashlib.sha256(data.encode()).hexdigest()[:12], 16)
    out = []
    while len(out) < n:
        out.append(_NAME_CHARS[h % len(_NAME_CHARS)])
        h //= len(_NAME_CHARS)
    return "".join(out)


def human_duration(seconds: float) -> str:
    """duration.HumanDuration from apimachinery (the AGE column)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def age(obj: dict[str, Any], now: float | None = None) -> str:
    ts = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if ts is None:
        return "<unknown>"
    return human_duration((now or time.time()) - ts)


def dig(obj: Any, *path: str | int, default: Any = None) -> Any:
    cur = obj
    for p in path:
        if isinstance(cur, dict):
            cur = cur.get(p)  # type: ignore[arg-type]
        elif isinstance(cur, list) and isinstance(p, int) and -len(cur) <= p < len(cur):
            cur = cur[p]
        else:
            return default
        if cur is None:
            return default
    return cur


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        pct = int(text[:-1])
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(text)


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in dig(obj, "status", "conditions", default=[]) or []:
        if c.get("type") == ctype:
            return c
    return None


def set_condition(status: dict[str, Any], ctype: str, value: str, reason: str = "", message: str = "",
                  now: str | None = None, heartbeat: bool = False, probe: bool = False) -> bool:
    """Set a condition, moving lastTransitionTime only when the status flips.
    Returns True if anything but timestamps changed."""
    conds = status.setdefault("conditions", [])
    now = now or now_iso()
    for c in conds:
        if c.get("type") == ctype:
            changed = c.get("status") != value or c.get("reason", "") != reason or c.get("message", "") != message
            if c.get("status") != value:
                c["lastTransitionTime"] = now
            c["status"] = value
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            if heartbeat:
                c["lastHeartbeatTime"] = now
            if probe:
                c["lastProbeTime"] = None
            if "lastUpdateTime" in c:
                c["lastUpdateTime"] = now if changed else c["lastUpdateTime"]
            return changed
    c = {"type": ctype, "status": value}
    if heartbeat:
        c["lastHeartbeatTime"] = now
    if probe:
        c["lastProbeTime"] = None
    c["lastTransitionTime"] = now
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    conds.append(c)
    return True


def parse_quantity(q: Any) -> float:
    """resource.Quantity to a float (cpu cores or bytes)."""
    if q is None:
        return 0.0
    if isinstance(q, int | float):
        return float(q)
    s = str(q).strip()
    suffixes = {
        "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6,
        "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    }
    for suf in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suf):
            try:
                return float(s[: -len(suf)]) * suffixes[suf]
            except ValueError:
                return 0.0
    try:
        return float(s)
    except ValueError:
        return 0.0
