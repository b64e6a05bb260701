"""Running the app on uvicorn over TLS.

TLS only: the listener gets the reloadable context from `tls`, so there is
no plaintext port. uvicorn handles SIGTERM/SIGINT: it stops accepting,
finishes the requests in flight, and `serve` returns 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from webhook.tls import certs
from webhook.server.app import ServerState, create_app
from webhook.tls.context import CertReloader

log = logging.getLogger("webhook.server")
GRACEFUL_SECONDS = 20


class _Protocol(HttpToolsProtocol):
    """HTTP/1.1 whose shutdown drops idle keep-alive connections at once.

    A graceful TLS close waits for the peer's close_notify, and API servers keep
    idle connections open in their pools; waiting for them would stretch every
    SIGTERM to the full grace period. Connections with a request in flight are
    still answered first, as uvicorn does.
    """

    def shutdown(self) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.abort()
        else:
            super().shutdown()


def ensure_dev_certs(cert_dir: Path) -> bool:
    """Create a dev CA and serving pair in `cert_dir` unless one is there."""
    if (cert_dir / certs.CERT_FILE).exists() and (cert_dir / certs.KEY_FILE).exists():
        return False
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    certs.write_bundle(cert_dir, certs.generate(names, days=365))
    log.info("generated development certificates", extra={"fields": {"cert_dir": str(cert_dir)}})
    return True


KEEP_ALIVE_SECONDS = 120
"""How long an idle keep-alive connection stays open, in seconds: longer than the API server keeps one.

kube-apiserver calls webhooks through a transport whose IdleConnTimeout is Go's
`http.DefaultTransport` value, 90 s (k8s.io/apimachinery v0.34.4,
`pkg/util/net/http.go`, `SetOldTransportDefaults`; Go `net/http/transport.go`).
A server that closes idle connections sooner makes every admission that comes
30-90 s after the previous one pay a new TCP and TLS handshake, and risks
closing a connection just as the API server sends on it. With a longer timeout the API server always closes first.
"""


def run(app: ASGIApp, context: ssl.SSLContext, host: str, port: int) -> bool:
    """Run an ASGI app on this project's serving stack until SIGTERM; False if it never started.

    The benchmark's constant-response floor runs through here too, so both
    measure the same uvicorn, protocol and TLS settings.
    """

    def context_factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_context_factory=context_factory,
        http=_Protocol,
        loop="uvloop",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    tune_gc()
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal to the
    # handler that was installed before it: make that one a clean exit with status 0.
    signal.signal(signal.SIGTERM, _exit_zero)
    try:
        server.run()
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    return bool(server.started)


def tune_gc() -> None:
    """The cyclic collector's settings for serving, applied once everything long-lived is loaded.

    Everything loaded so far lives for the whole process: it is kept out of the
    collector's scans, and young objects are collected less often. Reviews
    allocate many short-lived objects, and frequent full-heap passes show up as
    tail latency.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def serve(cert_dir: Path, host: str, port: int, state: ServerState | None = None) -> int:
    """Serve the app over TLS until SIGTERM/SIGINT; returns the exit status."""
    state = state or ServerState()
    state.reloader = CertReloader(cert_dir)
    log.info("serving", extra={"fields": {"host": host, "port": port, "cert_dir": str(cert_dir)}})
    if not run(create_app(state), state.reloader.context, host, port):
        log.error("server did not start", extra={"fields": {"host": host, "port": port}})
        return 1
    log.info("stopped")
    return 0


def _exit_zero(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
