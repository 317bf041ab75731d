"""Watches: the chunked event stream of one resource, served from the watch cache."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import errors
from .apiserver import Response, truthy
from .store import Entry, encode
from .tables import build_table

if TYPE_CHECKING:
    from .apiserver import ApiServer, ListOptions
    from .resources import ResourceType


def watch_response(api: ApiServer, rt: ResourceType, version: str, ns: str | None, opts: ListOptions,
                   q: dict[str, str], as_table: bool) -> Response:
    """A chunked watch: initial ADDED events (no resourceVersion) or replay from the
    watch cache, then live events; 410 Expired as an ERROR event when compacted."""
    timeout = float(q.get("timeoutSeconds") or 1800)
    bookmarks = truthy(q.get("allowWatchBookmarks"))
    rv_text = q.get("resourceVersion", "")
    want = api.api_version(rt, version)
    table = api.table_of(rt) if as_table else None
    include = q.get("includeObject", "Metadata")
    store = api.store
    scoped_ns = ns if rt.namespaced else None
    start_gen = store.generation

    def matches(e: Entry | None, ev_ns: str, ev_name: str) -> bool:
        if e is None:
            return False
        if scoped_ns is not None and ev_ns != scoped_ns:
            return False
        return opts.matches(rt, ev_ns, ev_name, e)

    first = [True]

    def line(typ: str, data: bytes) -> bytes:
        if table is not None:
            obj = json.loads(data)
            tbl = build_table([obj], table, include, "v1",
                              {"resourceVersion": obj["metadata"].get("resourceVersion", "")}, headers=first[0])
            first[0] = False
            data = encode(tbl)
        return b'{"type":"' + typ.encode() + b'","object":' + data + b"}\n"

    with store.lock:
        if rv_text in ("", "0"):
            initial = [(k, e) for k, e in store.entries(rt.key, scoped_ns) if matches(e, k[0], k[1])]
            initial.sort(key=lambda kv: kv[0])
            pos = store.rv
        else:
            try:
                pos = int(rv_text)
            except ValueError:
                raise errors.bad_request(f"invalid resource version: {rv_text}") from None
            initial = []
            if store.events_since(rt.key, pos) is None:
                oldest = store.ring_start(rt.key)
                err = errors.gone(f"too old resource version: {pos} ({oldest + 1})").status()

                def expired() -> Iterator[bytes]:
                    yield b'{"type":"ERROR","object":' + encode(err) + b"}\n"

                return Response(200, stream=expired())

    def stream() -> Iterator[bytes]:
        nonlocal pos
        deadline = time.monotonic() + timeout
        for _k, e in initial:
            yield line("ADDED", api.entry_bytes(e, rt, want))
        store.add_watcher(1)
        try:
            last_bookmark = time.monotonic()
            while not api.stopping.is_set():
                with store.lock:
                    evs = store.events_since(rt.key, pos)
                    if evs == [] and store.generation == start_gen:
                        store.changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))
                        evs = store.events_since(rt.key, pos)
                    gen_changed = store.generation != start_gen or not api.cluster.online
                if gen_changed:
                    return
                if evs is None:
                    err = errors.gone(f"too old resource version: {pos} ({store.ring_start(rt.key) + 1})").status()
                    yield b'{"type":"ERROR","object":' + encode(err) + b"}\n"
                    return
                for ev in evs:
                    pos = ev.rv
                    now_m = matches(ev.entry, ev.namespace, ev.name)
                    if ev.type == "DELETED":
                        if now_m or matches(ev.prev, ev.namespace, ev.name):
                            yield line("DELETED", api.entry_bytes(ev.entry, rt, want))
                        continue
                    was_m = matches(ev.prev, ev.namespace, ev.name)
                    if now_m:
                        yield line("MODIFIED" if was_m else "ADDED", api.entry_bytes(ev.entry, rt, want))
                    elif was_m:
                        yield line("DELETED", api.entry_bytes(ev.entry, rt, want))
                now = time.monotonic()
                if now >= deadline:
                    return
                if bookmarks and not evs and now - last_bookmark > 5 and table is None:
                    last_bookmark = now
                    bm = {"kind": rt.kind, "apiVersion": want, "metadata": {"resourceVersion": str(store.rv)}}
                    pos = max(pos, store.rv)
                    yield b'{"type":"BOOKMARK","object":' + encode(bm) + b"}\n"
        finally:
            store.add_watcher(-1)

    return Response(200, stream=stream())
