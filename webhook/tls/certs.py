"""Generating a CA and a serving certificate signed by it.

The API server must trust the webhook's serving certificate through the
`caBundle` of the webhook configuration, so every mode that does not use an
external issuer needs a small private CA: one for development (`./dev serve`),
`ep-webhook certs generate` for manual installs, and the self-managed mode.
ECDSA P-256 keys keep generation fast and are accepted by the Go TLS stack.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"
CA_KEY_FILE = "ca.key"
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        """The certificate, parsed."""
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class Bundle:
    """A CA and a serving pair it signed."""

    ca: Pair
    serving: Pair


def service_names(service: str, namespace: str) -> list[str]:
    """The DNS names the API server may use to reach a Service."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """Signatures only (ECDSA); a CA also signs certificates and CRLs."""
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=signs_certificates,
        crl_sign=signs_certificates, encipher_only=False, decipher_only=False,
    )


def new_ca(common_name: str = "vllm-ep-webhook-ca", days: int = 3650) -> Pair:
    """A new self-signed CA valid for `days`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def new_serving(ca: Pair, names: Sequence[str], days: int = 365) -> Pair:
    """A serving certificate for `names` (DNS names or IPs), signed by `ca`."""
    if not names:
        raise ValueError("a serving certificate needs at least one name")
    ca_cert = ca.cert
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def generate(names: Sequence[str], days: int = 365) -> Bundle:
    """A new CA and a serving certificate it signs for `names` (DNS names or IPs)."""
    ca = new_ca(days=max(days * 10, 365))
    return Bundle(ca, new_serving(ca, names, days))


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically (temp file + rename) with the given permissions.

    The file is created with `mode` from the start, so a private key is never
    readable by others, not even for an instant.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bundle(out_dir: Path, bundle: Bundle) -> None:
    """Write ca.crt, tls.crt and tls.key into `out_dir` (the key readable by its owner only).

    The CA's key is not written: a serving pod never needs it, and with it the pod could sign any name.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    write_file(out_dir / CA_FILE, bundle.ca.cert_pem, 0o644)
    write_file(out_dir / KEY_FILE, bundle.serving.key_pem, 0o600)
    write_file(out_dir / CERT_FILE, bundle.serving.cert_pem, 0o644)


def not_after(cert_pem: bytes) -> dt.datetime:
    """When the certificate in PEM `data` expires."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
