"""A cluster's object store: etcd-like revisions plus the API server's watch cache.

Objects are kept as compact JSON bytes (what the server sends anyway), so a
list is a byte join and 100,000 nodes fit in little memory; they are decoded
only when someone changes them.  Every write bumps one cluster-wide revision,
which becomes the object's `metadata.resourceVersion`, as in etcd.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads

# Identical label sets (all replicas of a ReplicaSet) share one dict.
_LABEL_INTERN: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
_EMPTY: dict[str, str] = {}


def intern_labels(labels: dict[str, str] | None) -> dict[str, str]:
    if not labels:
        return _EMPTY
    key = tuple(sorted(labels.items()))
    got = _LABEL_INTERN.get(key)
    if got is None:
        if len(_LABEL_INTERN) > 200_000:
            _LABEL_INTERN.clear()
        got = _LABEL_INTERN[key] = dict(key)
    return got


def encode(obj: dict[str, Any]) -> bytes:
    return _dumps(obj).encode()


class Entry:
    """One stored object version."""

    __slots__ = ("rv", "data", "labels", "fields")

    def __init__(self, rv: int, data: bytes, labels: dict[str, str], fields: tuple[str, ...] | None) -> None:
        self.rv = rv
        self.data = data
        self.labels = labels
        self.fields = fields

    def obj(self) -> dict[str, Any]:
        """A fresh decoded copy the caller may change."""
        return _loads(self.data)


class WatchEvent:
    """A change; `prev` lets a filtered watch turn label changes into ADDED/DELETED."""

    __slots__ = ("rv", "type", "namespace", "name", "entry", "prev")

    def __init__(self, rv: int, type_: str, namespace: str, name: str, entry: Entry, prev: Entry | None) -> None:
        self.rv = rv
        self.type = type_
        self.namespace = namespace
        self.name = name
        self.entry = entry
        self.prev = prev


class Ring:
    """The watch cache of one resource: the last N events.

    `start` is the revision after which the ring is complete; a watch from an
    older revision gets 410 Gone, as from the real watch cache.
    """

    __slots__ = ("events", "start")

    def __init__(self, start: int, size: int) -> None:
        self.events: deque[WatchEvent] = deque(maxlen=size)
        self.start = start

    def append(self, ev: WatchEvent) -> None:
        if len(self.events) == self.events.maxlen:
            self.start = self.events[0].rv
        self.events.append(ev)


FieldFn = Callable[[dict[str, Any]], tuple[str, ...]] | None


class Store:
    """Objects of one cluster, keyed by resource key then (namespace, name)."""

    def __init__(self, watch_cache_size: int = 100) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 1
        self.watch_cache_size = watch_cache_size
        self.generation = 0  # bumped on restore, so open watches end
        self._data: dict[str, dict[tuple[str, str], Entry]] = {}
        self._rings: dict[str, Ring] = {}
        self._watchers = 0
        self.dry_thread: int | None = None  # the thread whose writes are dry runs (kubesim.dryrun)
        # called as fn(key, event_type, obj) after each write, lock held
        self.listeners: list[Callable[[str, str, dict[str, Any]], None]] = []

    # -- reads ---------------------------------------------------------------
    def entry(self, key: str, ns: str, name: str) -> Entry | None:
        return self._data.get(key, {}).get((ns, name))

    def get(self, key: str, ns: str, name: str) -> dict[str, Any] | None:
        e = self._data.get(key, {}).get((ns, name))
        return e.obj() if e else None

    def entries(self, key: str, ns: str | None = None) -> list[tuple[tuple[str, str], Entry]]:
        with self.lock:
            items = self._data.get(key)
            if not items:
                return []
            if ns is None:
                return list(items.items())
            return [(k, e) for k, e in items.items() if k[0] == ns]

    def objects(self, key: str, ns: str | None = None) -> Iterator[dict[str, Any]]:
        for _, e in self.entries(key, ns):
            yield e.obj()

    def count(self, key: str) -> int:
        return len(self._data.get(key, ()))

    def keys(self) -> list[str]:
        return list(self._data)

    # -- writes --------------------------------------------------------------
    def put(self, key: str, obj: dict[str, Any], fields: FieldFn = None, event: str | None = None) -> Entry:
        """Store `obj` as a new revision; returns its entry.  Caller holds the lock."""
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        name = meta["name"]
        if self.dry_thread is not None and self.dry_thread == threading.get_ident():
            return self._dry_put(key, obj, fields)
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        bucket = self._data.setdefault(key, {})
        old = bucket.get((ns, name))
        entry = Entry(self.rv, encode(obj), intern_labels(meta.get("labels")), fields(obj) if fields else None)
        bucket[(ns, name)] = entry
        self._record(key, event or ("MODIFIED" if old else "ADDED"), ns, name, entry, old)
        for fn in self.listeners:
            fn(key, event or ("MODIFIED" if old else "ADDED"), obj)
        return entry

    def remove(self, key: str, ns: str, name: str, final: dict[str, Any] | None = None,
               fields: FieldFn = None) -> Entry | None:
        """Delete an object; the DELETED event carries its last state at a new revision."""
        bucket = self._data.get(key)
        if not bucket or (ns, name) not in bucket:
            return None
        if self.dry_thread is not None and self.dry_thread == threading.get_ident():
            old = bucket[(ns, name)]
            return Entry(old.rv, b"", old.labels, old.fields)
        old = bucket.pop((ns, name))
        self.rv += 1
        obj = final if final is not None else old.obj()
        obj["metadata"]["resourceVersion"] = str(self.rv)
        entry = Entry(self.rv, encode(obj), old.labels, fields(obj) if fields else old.fields)
        self._record(key, "DELETED", ns, name, entry, old)
        for fn in self.listeners:
            fn(key, "DELETED", obj)
        return entry

    def _dry_put(self, key: str, obj: dict[str, Any], fields: FieldFn) -> Entry:
        """A dry-run write: the object keeps its stored resourceVersion (none when new)."""
        meta = obj["metadata"]
        old = self._data.get(key, {}).get((meta.get("namespace", ""), meta["name"]))
        if old is None:
            meta.pop("resourceVersion", None)
            return Entry(0, b"", intern_labels(meta.get("labels")), None)
        meta["resourceVersion"] = str(old.rv)
        return Entry(old.rv, b"", old.labels, old.fields)

    def _record(self, key: str, type_: str, ns: str, name: str, entry: Entry, prev: Entry | None) -> None:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = Ring(self._floor, self.watch_cache_size)
        lite = Entry(prev.rv, b"", prev.labels, prev.fields) if prev is not None else None  # filters need no bytes
        ring.append(WatchEvent(self.rv, type_, ns, name, entry, lite))
        if self._watchers:
            self.changed.notify_all()

    # -- watch ---------------------------------------------------------------
    def ring_start(self, key: str) -> int:
        ring = self._rings.get(key)
        return ring.start if ring else self.rv

    def events_since(self, key: str, rv: int) -> list[WatchEvent] | None:
        """Events of `key` after revision `rv`, or None if `rv` is too old (410)."""
        ring = self._rings.get(key)
        if ring is None:
            # nothing written since the cache started: any revision up to now is fine
            return [] if rv >= self._floor else None
        if rv < ring.start:
            return None
        if not ring.events or ring.events[-1].rv <= rv:
            return []
        return [ev for ev in ring.events if ev.rv > rv]

    _floor = 0

    def add_watcher(self, delta: int) -> None:
        with self.lock:
            self._watchers += delta

    def reset_watch_cache(self) -> None:
        """Start the watch cache afresh (as after an API server restart)."""
        with self.lock:
            self._rings = {}
            self._floor = self.rv

    # -- snapshot ------------------------------------------------------------
    def dump(self) -> tuple[int, list[tuple[str, bytes]]]:
        """A consistent point-in-time copy of every object (etcd snapshot)."""
        with self.lock:
            return self.rv, [(key, e.data) for key, bucket in self._data.items() for e in bucket.values()]

    def load(self, rv: int, items: Iterable[tuple[str, dict[str, Any]]],
             fields_for: Callable[[str], FieldFn]) -> None:
        """Replace all state (etcd restore).  The revision only moves forward and
        the watch cache starts empty, so clients holding older revisions relist."""
        with self.lock:
            data: dict[str, dict[tuple[str, str], Entry]] = {}
            for key, obj in items:
                meta = obj["metadata"]
                ent_rv = int(meta.get("resourceVersion") or 0)
                fn = fields_for(key)
                data.setdefault(key, {})[(meta.get("namespace", ""), meta["name"])] = Entry(
                    ent_rv, encode(obj), intern_labels(meta.get("labels")), fn(obj) if fn else None
                )
            self.rv = max(self.rv, rv) + 1000  # like `etcdutl snapshot restore --bump-revision`
            self._data = data
            self._rings = {}
            self._floor = self.rv
            self.generation += 1
            self.changed.notify_all()
