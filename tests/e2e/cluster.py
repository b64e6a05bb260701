"""A real etcd and kube-apiserver on loopback, for end-to-end tests.

Binaries come from `scripts/k8s-bins.sh` (KUBEBUILDER_ASSETS, or a cached
build from the Go module proxy). Each start gets fresh certificates: a
serving pair for the API server, a client CA with an admin identity in
`system:masters`, and a service-account signing key. Everything listens on
127.0.0.1 only and is stopped by `Cluster.stop()`.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import SHARED
from webhook.tls import certs

ROOT = Path(__file__).resolve().parents[2]
CRDS_ENV = "EP_WEBHOOK_CRDS_DIR"


def crds_dir() -> Path:
    return Path(os.environ.get(CRDS_ENV) or SHARED / "crds")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def k8s_binaries() -> Path:
    done = subprocess.run(["bash", str(ROOT / "scripts" / "k8s-bins.sh")], stdout=subprocess.PIPE, text=True,
                          timeout=3600, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def client_pair(ca: certs.Pair, user: str, groups: list[str]) -> certs.Pair:
    """A client certificate: CN is the user name, O entries are its groups."""
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]
                        + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca.cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certs.Pair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


@dataclass
class Cluster:
    workdir: Path
    bins: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_port: int = 0
    kubeconfig: Path = Path()
    server_ca: bytes = b""
    client_ca: certs.Pair | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        serving = certs.generate(["localhost", "127.0.0.1"])
        certs.write_bundle(pki / "serving", serving)
        self.server_ca = serving.ca.cert_pem
        self.client_ca = certs.new_ca("e2e-client-ca")
        certs.write_file(pki / "client-ca.crt", self.client_ca.cert_pem, 0o644)
        sa = ec.generate_private_key(ec.SECP256R1())
        certs.write_file(pki / "sa.key", sa.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()), 0o600)
        certs.write_file(pki / "sa.pub", sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
        admin = client_pair(self.client_ca, "e2e-admin", ["system:masters"])

        etcd_port, peer_port = free_port(), free_port()
        self._spawn("etcd", [
            str(self.bins / "etcd"), "--name", "e2e", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"e2e=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        self.api_port = free_port()
        self._spawn("kube-apiserver", [
            str(self.bins / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={self.api_port}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--tls-cert-file={pki / 'serving' / 'tls.crt'}", f"--tls-private-key-file={pki / 'serving' / 'tls.key'}",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/24", "--authorization-mode=RBAC",
            f"--cert-dir={self.workdir / 'apiserver-certs'}", "--profiling=false",
            "--enable-priority-and-fairness=false", "--disable-admission-plugins=ServiceAccount",
        ])
        self.kubeconfig = self.write_kubeconfig("admin", admin)
        self._wait_ready(admin)

    def write_kubeconfig(self, name: str, pair: certs.Pair) -> Path:
        # a ':' (as in system:serviceaccount:...) would make the client read the path as a list
        path = self.workdir / f"kubeconfig-{name.replace(':', '_')}"
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        config: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": f"https://127.0.0.1:{self.api_port}",
                                                     "certificate-authority-data": b64(self.server_ca)}}],
            "users": [{"name": name, "user": {"client-certificate-data": b64(pair.cert_pem),
                                             "client-key-data": b64(pair.key_pem)}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": name}}],
        }
        certs.write_file(path, yaml.safe_dump(config).encode(), 0o600)
        return path

    def user_kubeconfig(self, user: str, groups: list[str]) -> Path:
        assert self.client_ca is not None
        return self.write_kubeconfig(user, client_pair(self.client_ca, user, groups))

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def _wait_ready(self, admin: certs.Pair) -> None:
        certs.write_file(self.workdir / "admin.crt", admin.cert_pem, 0o600)
        certs.write_file(self.workdir / "admin.key", admin.key_pem, 0o600)
        ctx = ssl.create_default_context(cadata=self.server_ca.decode())
        ctx.load_cert_chain(str(self.workdir / "admin.crt"), str(self.workdir / "admin.key"))
        deadline = time.monotonic() + 120
        while True:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[0]} exited: {self.logs()}")
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{self.api_port}/readyz", context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube-apiserver not ready after 120 s: {self.logs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        out = []
        for name in ("etcd", "kube-apiserver"):
            path = self.workdir / f"{name}.log"
            if path.exists():
                out.append(f"--- {name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def stop(self) -> None:
        # kube-apiserver first: stopped after etcd it would wait on the dead store until killed
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
