"""One background thread that runs every cluster's timers and controllers.

A single thread keeps controller code free of races (it holds a cluster's
store lock while it reconciles) and costs nothing per cluster, which matters
with thousands of clusters in one process.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("kubesim")


class Timer:
    __slots__ = ("when", "fn", "cancelled", "kind")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False
        self.kind = ""

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kubesim-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        t = Timer(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            heapq.heappush(self._heap, (t.when, next(self._seq), t))
            if self._heap[0][2] is t:
                self._cond.notify()
        return t

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                if self._stop:
                    return
                _, _, t = heapq.heappop(self._heap)
            if t.cancelled:
                continue
            try:
                t.fn()
            except Exception:  # a controller bug must not stop the fleet
                log.exception("kubesim timer failed")
