"""Certificates and keys: the SP key pair Corral generates, and plain-words facts about any certificate."""
from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

SP_KEY_BITS = 3072
SP_CERT_YEARS = 10

_PEM_BODY = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def generate_sp_keypair(common_name: str, *, bits: int = SP_KEY_BITS, years: int = SP_CERT_YEARS) -> tuple[str, str]:
    """A new RSA key and a self-signed certificate for it, both PEM: ``(certificate, private_key)``.

    SAML only uses the certificate to carry the public key, so self-signed is normal;
    the long lifetime follows Shibboleth's ``keygen.sh``.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "corral")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert_pem, key_pem


def to_pem(cert: str) -> str:
    """Accept PEM or the bare base64 found in SAML metadata; return PEM."""
    cert = (cert or "").strip()
    if "-----BEGIN CERTIFICATE-----" in cert:
        return cert
    body = "".join(cert.split())
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def to_base64(cert: str) -> str:
    """The certificate's base64 body without headers or whitespace (the form metadata uses)."""
    cert = (cert or "").strip()
    match = _PEM_BODY.search(cert)
    return "".join((match.group(1) if match else cert).split())


def load_certificate(cert: str) -> x509.Certificate:
    """Raises ``ValueError`` with a readable message when the text is not a certificate."""
    try:
        body = base64.b64decode(to_base64(cert), validate=True)
        return x509.load_der_x509_certificate(body)
    except Exception as exc:  # noqa: BLE001 - binascii, ValueError, and cryptography's own errors
        raise ValueError(f"not a valid X.509 certificate ({exc.__class__.__name__})") from None


@dataclass(frozen=True)
class CertInfo:
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    key: str
    key_bits: int
    sha256: str

    @property
    def expired(self) -> bool:
        return self.not_after <= dt.datetime.now(dt.UTC)

    @property
    def not_yet_valid(self) -> bool:
        return self.not_before > dt.datetime.now(dt.UTC)

    def expires_within(self, days: int) -> bool:
        return self.not_after <= dt.datetime.now(dt.UTC) + dt.timedelta(days=days)

    def describe(self) -> str:
        return f"{self.subject} ({self.key}, valid until {self.not_after:%Y-%m-%d}, SHA-256 {self.sha256[:23]}…)"


def cert_info(cert: str) -> CertInfo:
    c = load_certificate(cert)
    public = c.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        key, bits = f"RSA {public.key_size}", public.key_size
    elif isinstance(public, ec.EllipticCurvePublicKey):
        key, bits = f"EC {public.curve.name}", public.key_size
    else:
        key, bits = type(public).__name__, 0
    digest = c.fingerprint(hashes.SHA256()).hex().upper()
    return CertInfo(
        subject=c.subject.rfc4514_string() or "(no subject)",
        not_before=c.not_valid_before_utc,
        not_after=c.not_valid_after_utc,
        key=key,
        key_bits=bits,
        sha256=":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
    )


def load_private_key(key_pem: str):
    try:
        return serialization.load_pem_private_key(key_pem.encode(), password=None)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"not a valid unencrypted PEM private key ({exc.__class__.__name__})") from None


def key_matches_certificate(key_pem: str, cert: str) -> bool:
    key = load_private_key(key_pem)
    public = load_certificate(cert).public_key()
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == public.public_bytes(*fmt)
