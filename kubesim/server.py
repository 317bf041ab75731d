"""The HTTP front: one loopback server for the whole fleet.

    /k8s/clusters/<name>/...                    a cluster's Kubernetes API (bearer token)
    /etcd/<name>/v3/maintenance/snapshot        POST: the cluster's etcd snapshot bytes
    /etcd/<name>/v3/maintenance/restore         POST: restore from snapshot bytes
    /_sim/...                                   the simulator's control API (see README)
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from . import authz, errors, etcd
from .apiserver import Request, Response, json_response

if TYPE_CHECKING:
    from .sim import Fleet

log = logging.getLogger("kubesim.http")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    fleet: Fleet
    ssl_context: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            # the handshake runs in the handler thread, not the accept loop
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                pass
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _serve(self) -> None:
        fleet = self.server.fleet
        body = self._read_body()
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if path.startswith("/k8s/clusters/"):
                rest = path[len("/k8s/clusters/"):]
                name, _, sub = rest.partition("/")
                cluster = fleet.clusters.get(name)
                if cluster is None:
                    return self._send(Response(404, b"404 page not found\n", "text/plain; charset=utf-8"))
                if not cluster.online:
                    if fleet.offline_mode.get(name) == "refuse":
                        self.close_connection = True
                        try:
                            self.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                        return None
                    return self._send(json_response(503, errors.service_unavailable(
                        f"cluster {name} is unreachable").status()))
                req = Request(self.command, "/" + sub, query, headers, body)
                if cluster.authorize(headers.get("authorization")):  # the admin (system:masters): no RBAC
                    if "impersonate-user" in headers or "impersonate-group" in headers:
                        return self._send(authz.serve(cluster, authz.admin_user(cluster), req))
                    return self._send(cluster.api.handle(req))
                user = authz.authenticate(cluster, headers.get("authorization"))
                if user is None:
                    return self._send(json_response(401, errors.unauthorized().status()))
                return self._send(authz.serve(cluster, user, req))
            if path.startswith("/etcd/"):
                return self._send(self._etcd(path, headers, body))
            if path.startswith("/_sim"):
                return self._send(fleet.control.handle(self.command, path, query, body))
            if path in ("/", "/healthz"):
                return self._send(Response(200, b"kubesim ok\n", "text/plain"))
            return self._send(Response(404, b"404 page not found\n", "text/plain; charset=utf-8"))
        except errors.ApiError as e:
            return self._send(json_response(e.code, e.status(), e.headers))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # report, keep serving
            log.exception("request failed: %s %s", self.command, self.path)
            return self._send(json_response(500, errors.internal(str(e)).status()))

    def _etcd(self, path: str, headers: dict[str, str], body: bytes) -> Response:
        fleet = self.server.fleet
        parts = path.strip("/").split("/")
        if len(parts) != 5 or parts[2:4] != ["v3", "maintenance"] or self.command != "POST":
            return Response(404, b"404 page not found\n", "text/plain")
        cluster = fleet.clusters.get(parts[1])
        if cluster is None:
            return Response(404, b"404 page not found\n", "text/plain")
        if not cluster.online:
            return json_response(503, {"error": "etcdserver: cluster unreachable", "code": 14})
        if not cluster.authorize(headers.get("authorization")):
            return json_response(401, {"error": "etcdserver: permission denied", "code": 7})
        if parts[4] == "snapshot":
            blob = etcd.snapshot(cluster)
            import hashlib

            return Response(200, blob, "application/octet-stream", {
                "X-Etcd-Snapshot-Sha256": hashlib.sha256(blob).hexdigest(),
                "X-Etcd-Revision": str(cluster.store.rv),
                "X-Kubernetes-Version": cluster.version,
            })
        if parts[4] == "restore":
            try:
                out = etcd.restore(cluster, body)
            except etcd.SnapshotError as e:
                return json_response(400, {"error": str(e), "code": 3})
            return json_response(200, out)
        return Response(404, b"404 page not found\n", "text/plain")

    def _send(self, resp: Response) -> None:
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Audit-Id", "kubesim")
            self.send_header("Cache-Control", "no-cache, private")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if resp.stream is not None:
                attach = getattr(resp.stream, "attach", None)
                if attach is not None:  # lets a stream that writes rarely notice the client leaving (podlogs.py)
                    attach(self.connection)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                try:
                    for chunk in resp.stream:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                finally:
                    close = getattr(resp.stream, "close", None)
                    if close:
                        close()
                return
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True


def serve(fleet: Fleet, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> tuple[_Server, threading.Thread]:
    srv = _Server((host, port), Handler)
    srv.fleet = fleet
    srv.ssl_context = ssl_context
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, name="kubesim-http", daemon=True)
    t.start()
    return srv, t


