"""Local receivers: an HTTP server standing in for Slack's incoming webhooks, and aiosmtpd with STARTTLS and AUTH."""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class SlackReceiver:
    def __init__(self):
        self.messages: list[dict] = []
        self.answer = (200, b"ok")
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.messages.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                          "json": json.loads(body or b"{}")})
                status, text = receiver.answer
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack():
    receiver = SlackReceiver()
    yield receiver
    receiver.stop()


def _certificate(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class MailReceiver:
    USER, PASSWORD = "corral", "s3cret-smtp-pass"

    def __init__(self, tmp_path):
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[dict] = []
        self.logins: list[str] = []
        cert_file, key_file = _certificate(tmp_path)
        self.ca_file = str(cert_file)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert_file, key_file)
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                receiver.messages.append({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                                          "data": envelope.content.decode("utf-8", "replace"),
                                          "tls": session.ssl is not None})
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == self.USER.encode() and auth_data.password == self.PASSWORD.encode()
            receiver.logins.append(auth_data.login.decode())
            # handled=False: aiosmtpd answers a refusal itself ("535 5.7.8 Authentication credentials invalid");
            # its default (handled=True) leaves the answer to the authenticator, and the client waits.
            return AuthResult(success=ok, handled=False)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        # STARTTLS first; AUTH is offered only over TLS (auth_require_tls) and required before MAIL (auth_required).
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=tls,
                                     require_starttls=True, authenticator=authenticator, auth_require_tls=True,
                                     auth_required=True)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture
def mail(tmp_path, monkeypatch):
    from notifiers import services

    receiver = MailReceiver(tmp_path)
    monkeypatch.setattr(services, "_tls_context", lambda: ssl.create_default_context(cafile=receiver.ca_file))
    yield receiver
    receiver.stop()
