"""The server's TLS context, and swapping its certificate without a restart.

Kubernetes updates a mounted Secret by writing a new timestamped folder and
atomically re-pointing the `..data` symlink; cert-manager and the
self-managed mode renew certificates the same way. `CertReloader` notices a
change of either file (through symlinks, with `reloader.Reloading`), checks
that the new pair loads and matches, then loads it into the live context:
new handshakes use it at once, connections already open keep theirs, and
nothing restarts.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from webhook.tls.certs import CERT_FILE, KEY_FILE, not_after
from webhook.tls.reloader import Reloading

CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are all strong."""


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context for the pair: TLS 1.2 or later, `CIPHERS`, HTTP/1.1 by ALPN."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


class CertReloader(Reloading[float]):
    """Watches `tls.crt`/`tls.key` in a folder and reloads them into the live `context`.

    Its value is the certificate's expiry (`not_after`, Unix time). A
    half-written or mismatched pair is refused (counted in `failures`, logged
    without details) and the old one keeps serving until the files change again.
    """

    def __init__(self, cert_dir: Path) -> None:
        self.cert_file = cert_dir / CERT_FILE
        self.key_file = cert_dir / KEY_FILE
        self.context = server_context(self.cert_file, self.key_file)
        self._start((self.cert_file, self.key_file), self._load_pair, "serving certificate", quiet_errors=True)

    @property
    def not_after(self) -> float:
        """Expiry of the certificate being served, Unix time."""
        return self.value

    def _load_pair(self) -> float:
        cert_pem = self.cert_file.read_bytes()
        server_context(self.cert_file, self.key_file)  # validate first: never break the live context
        self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return not_after(cert_pem).timestamp()
