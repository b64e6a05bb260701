"""The server's TLS context, and swapping its certificate without a restart.

Kubernetes updates a mounted Secret by writing a new timestamped folder and
atomically re-pointing the `..data` symlink; cert-manager and the
self-managed mode renew certificates the same way. The reloader notices a
change of either file (through symlinks), checks that the new pair loads and
matches, then loads it into the live context: new handshakes use it at once,
connections already open keep theirs, and nothing restarts.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from webhook.certs import CERT_FILE, KEY_FILE, not_after

log = logging.getLogger("webhook.tls")

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are all strong.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


@dataclass(frozen=True)
class _Stamp:
    cert: tuple[str, int, int, int]
    key: tuple[str, int, int, int]


def _stamp_of(path: Path) -> tuple[str, int, int, int]:
    real = os.path.realpath(path)
    st = os.stat(real)
    return (real, st.st_ino, st.st_mtime_ns, st.st_size)


class CertReloader:
    """Watches `tls.crt`/`tls.key` in a folder and reloads a live SSLContext."""

    def __init__(self, cert_dir: Path) -> None:
        self.cert_file = cert_dir / CERT_FILE
        self.key_file = cert_dir / KEY_FILE
        self.context = server_context(self.cert_file, self.key_file)
        self.stamp = self._stamp()
        self.not_after = not_after(self.cert_file.read_bytes()).timestamp()
        self.reloads = 0
        self.failures = 0
        self._failed_stamp: _Stamp | None = None

    def _stamp(self) -> _Stamp | None:
        try:
            return _Stamp(_stamp_of(self.cert_file), _stamp_of(self.key_file))
        except OSError:
            return None

    def check(self) -> bool:
        """Reload if the files changed and the new pair is valid; True if reloaded."""
        stamp = self._stamp()
        if stamp is None or stamp == self.stamp or stamp == self._failed_stamp:
            return False
        try:
            cert_pem = self.cert_file.read_bytes()
            server_context(self.cert_file, self.key_file)  # validate first: never break the live context
            self.context.load_cert_chain(str(self.cert_file), str(self.key_file))
            self.not_after = not_after(cert_pem).timestamp()
        except (OSError, ssl.SSLError, ValueError) as e:
            # A half-written or mismatched pair: keep serving the old one and retry on the next change.
            self.failures += 1
            self._failed_stamp = stamp
            log.warning("certificate reload failed, keeping the current certificate: %s", type(e).__name__)
            return False
        self.stamp = stamp
        self._failed_stamp = None
        self.reloads += 1
        log.info("reloaded serving certificate from %s", self.cert_file.parent)
        return True
