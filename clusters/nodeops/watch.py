"""Following a cluster's nodes with one watch instead of a LIST per look.

``NodeWatcher`` lists the nodes once, then watches from the list's resourceVersion on a
background thread, keeping an up-to-date copy of every node. A watch that ends is resumed from
the last resourceVersion seen (bookmarks included); a 410 Gone (the version is too old) makes it
list again. Whoever follows nodes calls ``snapshot()`` for the current copy and ``wait()`` to
sleep until something changes, so a 100-node upgrade costs a handful of requests per minute for
following nodes, whatever its length.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from clusters import kube
from clusters.nodeops.api import ClusterApi

logger = logging.getLogger("corral.clusters")

WATCH_SECONDS = 240  # the server ends a watch after this; it is resumed at once
RETRY_FIRST, RETRY_MAX = 0.2, 5.0
GIVE_UP_AFTER = 30.0  # seconds without a working list or watch before snapshot() raises


class NodeWatcher:
    """A live copy of the cluster's nodes, kept by one watch on its own thread."""

    def __init__(self, api: ClusterApi, *, give_up_after: float = GIVE_UP_AFTER):
        self.api = api
        self.give_up_after = give_up_after
        self.nodes: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.lists = 0  # how many LISTs (1 + one per 410 or lost watch without a version)
        self.watches = 0
        self.error: kube.ClusterError | None = None
        self._error_since: float | None = None
        self._generation = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._response = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> NodeWatcher:
        """List the nodes (raising ClusterError if that fails) and start watching."""
        self._list()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:  # noqa: BLE001 - closing a stream that already ended
                pass
        if self._thread is not None:
            self._thread.join(5)
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> NodeWatcher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> dict[str, dict[str, Any]]:
        """The nodes as last seen; raises the watch's error once it has failed for ``give_up_after`` s."""
        with self._cond:
            if self.error is not None and self._error_since is not None and \
                    time.monotonic() - self._error_since > self.give_up_after:
                raise self.error
            return dict(self.nodes)

    @property
    def generation(self) -> int:
        return self._generation

    def wait(self, since: int, timeout: float) -> int:
        """Sleep until a node changes after generation ``since`` (or ``timeout``); returns the generation."""
        with self._cond:
            if self._generation == since and not self._stop.is_set():
                self._cond.wait(timeout)
            return self._generation

    # ------------------------------------------------------------------ the watch
    def _changed(self) -> None:
        self._generation += 1
        self._cond.notify_all()

    def _list(self) -> None:
        listed = self.api.list_nodes()
        with self._cond:
            self.nodes = {n["metadata"]["name"]: n for n in listed.get("items") or []}
            self.resource_version = (listed.get("metadata") or {}).get("resourceVersion", "")
            self.lists += 1
            self._ok()
            self._changed()

    def _ok(self) -> None:
        self.error, self._error_since = None, None

    def _failed(self, exc: BaseException) -> None:
        with self._cond:
            self.error = exc if isinstance(exc, kube.ClusterError) else kube.explain(exc, self.api.server)
            if self._error_since is None:
                self._error_since = time.monotonic()
            self._changed()

    def _run(self) -> None:
        pause = RETRY_FIRST
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self._list()
                if self._watch_once():
                    pause = RETRY_FIRST
                    continue
            except kube.ClusterError as exc:
                self._failed(exc)
            except Exception as exc:  # noqa: BLE001 - a broken stream is retried like any network trouble
                if self._stop.is_set():
                    return
                self._failed(exc)
            self._stop.wait(pause)
            pause = min(RETRY_MAX, pause * 2)

    def _watch_once(self) -> bool:
        """One watch request; True when it ended normally (resume at once), False to back off."""
        self.api.count()
        self.watches += 1
        try:
            response = self.api.core.list_node(
                watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS, _preload_content=False,
                _request_timeout=(kube.CONNECT_TIMEOUT, WATCH_SECONDS + 30))
        except ApiException as exc:
            if exc.status == 410:
                self.resource_version = ""
                return True
            raise kube.explain(exc, self.api.server) from None
        self._response = response
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    return True
                event = json.loads(line)
                if not self._apply(event):
                    return True
        finally:
            self._response = None
            response.release_conn()
        return True

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply one watch event; False when the watch must start over (410 Gone: list again)."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                logger.info("node watch on %s: resourceVersion too old; listing again", self.api.server)
                self.resource_version = ""
                return False
            raise kube.ClusterError(f"the node watch failed: {obj.get('message') or obj}", status=obj.get("code"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        with self._cond:
            if version:
                self.resource_version = version
            self._ok()
            if kind == "BOOKMARK":
                return True
            name = obj["metadata"]["name"]
            if kind == "DELETED":
                self.nodes.pop(name, None)
            else:
                self.nodes[name] = obj
            self._changed()
        return True
