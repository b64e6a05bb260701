"""Starting `ep-webhook serve` for real on loopback, and talking to it over TLS."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import isvc
from webhook.tls import certs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_context(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = True
    return ctx


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    cert_dir: Path
    log_path: Path

    def ca(self) -> Path:
        return self.cert_dir / "ca.crt"

    def connect(self, ca: Path | None = None, timeout: float = 10) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "localhost", self.port, context=client_context(ca or self.ca()), timeout=timeout
        )

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        conn = self.connect()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read(), dict(resp.getheaders())
        finally:
            conn.close()

    def review(self, review: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, body, _ = self.request("POST", "/mutate", json.dumps(review).encode(), {"Content-Type": "application/json"})
        return status, json.loads(body)

    def metrics(self) -> dict[str, float]:
        _, body, _ = self.request("GET", "/metrics")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def running_server(cert_dir: Path, log_path: Path, extra: list[str] | None = None,
                   port: int | None = None) -> Iterator[Server]:
    port = port or free_port()
    cmd = [sys.executable, "-m", "webhook", "serve", "--cert-dir", str(cert_dir), "--host", "127.0.0.1",
           "--port", str(port), *(extra or [])]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    server = Server(proc, port, cert_dir, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {server.logs()}")
            try:
                if server.request("GET", "/readyz")[0] == 200:
                    break
            except (OSError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready: {server.logs()}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
        log.close()


def review_for(obj: Any, api_version: str = "admission.k8s.io/v1", operation: str = "CREATE",
               uid: str = "0b5a1e4c-5d0a-4a53-9d1b-6ed0d3a1c001", kind: str = "InferenceService",
               group: str = "serving.kserve.io", dry_run: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1beta1", "kind": kind},
            "resource": {"group": group, "version": "v1beta1", "resource": "inferenceservices"},
            "namespace": "llm",
            "name": "qwen3",
            "operation": operation,
            "userInfo": {"username": "alice"},
            "object": obj,
            "oldObject": None,
            "dryRun": dry_run,
        },
    }


def annotated(command: list[str] | None = None) -> dict[str, Any]:
    return isvc(command=command or ["vllm", "serve", "/mnt/models", "--tensor-parallel-size", "8"])


@contextmanager
def server_with_new_certs(base: Path, extra: list[str] | None = None, port: int | None = None) -> Iterator[Server]:
    """A server on loopback with a fresh CA and serving pair for localhost and 127.0.0.1 in base/certs."""
    cert_dir = base / "certs"
    certs.write_bundle(cert_dir, certs.generate(["localhost", "127.0.0.1"]))
    with running_server(cert_dir, base / "log", extra, port) as server:
        yield server


async def mutate_in_process(app: Any, body: bytes, content_type: bytes | None = b"application/json") -> tuple[int, bytes]:
    """POST `body` to the ASGI `app`'s /mutate in this process, as uvicorn hands a request over (in 64 KiB chunks):
    the HTTP status and the response body."""
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
        "path": "/mutate", "raw_path": b"/mutate", "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8443),
    }
    chunks = [body[i:i + 65536] for i in range(0, len(body), 65536)] or [b""]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, payload
