"""`kubectl logs -f`: the pod log as a chunked stream, as the kubelet serves it.

The lines the container printed so far (after `tailLines`), then each new line as the container
prints it (host-run containers record theirs in `NodeRuntime.logs`), until the container's pod ends
(Succeeded, Failed, deleted), `limitBytes` is reached, the fleet stops, or the client leaves. The
client leaving is noticed without a write: the server hands the stream its socket (`attach`), and a
socket that turns readable (EOF, reset, a TLS close_notify) while nothing more is expected from the
client means it is gone, so the handler thread ends at once rather than at the next line.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .apiserver import Response
from .util import dig

if TYPE_CHECKING:
    from .apiserver import ApiServer

POLL = 0.1  # seconds between looks at the container's output


def client_gone(sock: socket.socket | None) -> bool:
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    if isinstance(sock, ssl.SSLSocket):
        return True  # a streaming client sends nothing more: EOF, reset or close_notify
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class FollowStream:
    """Iterable of chunks; `attach(sock)` (server.py) lets it notice a client that left."""

    def __init__(self, api: ApiServer, pod: dict[str, Any], container: str, first: list[tuple[str, str]],
                 seen: int, stamps: bool, limit: int) -> None:
        self.api = api
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"].get("uid", "")
        self.node = dig(pod, "spec", "nodeName", default="") or ""
        self.container = container
        self.first = first
        self.seen = seen
        self.stamps = stamps
        self.limit = limit
        self.sock: socket.socket | None = None
        self._gen: Iterator[bytes] | None = None

    def attach(self, sock: socket.socket) -> None:
        self.sock = sock

    def __iter__(self) -> Iterator[bytes]:
        self._gen = self._run()
        return self._gen

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()  # type: ignore[attr-defined]

    def _text(self, lines: list[tuple[str, str]]) -> bytes:
        return "".join(f"{ts} {line}\n" if self.stamps else f"{line}\n" for ts, line in lines).encode()

    def _ended(self) -> bool:
        e = self.api.store.entry("pods", self.ns, self.name)
        if e is None:
            return True
        pod = e.obj()
        if pod["metadata"].get("uid") != self.uid:
            return True
        if dig(pod, "status", "phase") in ("Succeeded", "Failed"):
            return True
        for cs in dig(pod, "status", "containerStatuses", default=[]) or []:
            if cs.get("name") == self.container and (cs.get("state") or {}).get("terminated"):
                return True
        return False

    def _run(self) -> Iterator[bytes]:
        sent = 0

        def cut(data: bytes) -> bytes:
            return data[: max(0, self.limit - sent)] if self.limit else data

        data = cut(self._text(self.first))
        if data:
            sent += len(data)
            yield data
        while not self.api.stopping.is_set() and not (self.limit and sent >= self.limit):
            runtime = self.api.cluster.nodes.get(self.node)
            lines = runtime.logs.lines(self.uid, self.container) if runtime is not None else None
            ended = self._ended()  # looked at before the lines, so the last ones are never missed
            if lines is not None and len(lines) > self.seen:
                data = cut(self._text(lines[self.seen:]))
                self.seen = len(lines)
                if data:
                    sent += len(data)
                    yield data
                continue
            if ended:
                return
            deadline = time.monotonic() + POLL
            while time.monotonic() < deadline:
                if client_gone(self.sock):
                    return
                time.sleep(0.02)


def follow(api: ApiServer, pod: dict[str, Any], container: str, first: list[tuple[str, str]], seen: int,
           stamps: bool, limit: str | None) -> Response:
    n = int(limit) if limit and limit.isdigit() else 0
    return Response(200, content_type="text/plain", stream=FollowStream(api, pod, container, first, seen, stamps, n))
