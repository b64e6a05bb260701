"""Self-managed certificates: a CA and serving pair kept in a Secret.

The Helm chart's default mode needs no cert-manager: every replica runs
`ep-webhook serve --self-managed`, which

1. reads the Secret (creating it if absent — when several replicas start at
   once, exactly one create wins with 201 and the others get 409 and read the
   winner's Secret; updates carry the resourceVersion, so a lost race is
   re-read rather than overwritten);
2. renews the serving certificate when less than `renew_before` of its life is
   left, and the CA when it would expire within twice that; a new CA joins the
   bundle while the old one stays in it until it expires, so certificates
   signed by either are trusted during the overlap;
3. writes tls.crt/tls.key/ca.crt into the cert folder, where the TLS reloader
   picks them up;
4. keeps `caBundle` of every webhook in the named webhook configurations equal
   to the bundle.

`secret_update` is the pure part (what the Secret should hold); `SelfManager` does the
Kubernetes I/O around it.

Least privilege — exactly this RBAC is needed:
- Role in the Secret's namespace: `secrets` `get`, `update` with
  `resourceNames: [SECRET]`, and `create` (Kubernetes cannot restrict create by name);
- ClusterRole: `mutatingwebhookconfigurations` (and `validatingwebhookconfigurations`
  when given) `get`, `update` with `resourceNames: [NAMES...]`.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.tls import certs

log = logging.getLogger("webhook.selfmanaged")

CA_KEY = certs.CA_KEY_FILE


@dataclass(frozen=True)
class Settings:
    """What self-managed certificate mode keeps: the Secret, the names, the webhook configurations, the lifetimes."""
    secret_name: str
    namespace: str
    names: tuple[str, ...]
    mutating_configs: tuple[str, ...] = ()
    validating_configs: tuple[str, ...] = ()
    renew_before: dt.timedelta = dt.timedelta(days=30)
    cert_days: int = 365
    ca_days: int = 3650


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def split_pems(data: bytes) -> list[bytes]:
    """The certificates of a PEM bundle, each as `new_ca` writes one."""
    marker = b"-----END CERTIFICATE-----"
    return [p.strip() + b"\n" + marker + b"\n" for p in data.split(marker)[:-1] if p.strip()]


def _valid_pair(cert_pem: bytes, key_pem: bytes) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError:
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return False
    return cert.public_key() == key.public_key()


def _names_of(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def secret_update(current: dict[str, bytes] | None, settings: Settings, now: dt.datetime | None = None) -> dict[str, bytes] | None:
    """What the Secret must hold now; None when it is fine as it is."""
    now = now or _now()
    data = current or {}
    ca_pems = split_pems(data.get(certs.CA_FILE, b""))
    ca_ok = bool(ca_pems) and _valid_pair(ca_pems[0], data.get(CA_KEY, b""))
    changed = False
    if ca_ok:
        ca = certs.Pair(ca_pems[0], data[CA_KEY])
        if ca.cert.not_valid_after_utc - now < 2 * settings.renew_before:
            ca, changed = certs.new_ca(days=settings.ca_days), True
    else:
        ca, changed, ca_pems = certs.new_ca(days=settings.ca_days), True, []
    bundle = [ca.cert_pem] + [
        p for p in ca_pems
        if p != ca.cert_pem and x509.load_pem_x509_certificate(p).not_valid_after_utc > now
    ]
    serving_ok = (
        not changed
        and _valid_pair(data.get(certs.CERT_FILE, b""), data.get(certs.KEY_FILE, b""))
    )
    if serving_ok:
        cert = x509.load_pem_x509_certificate(data[certs.CERT_FILE])
        try:
            cert.verify_directly_issued_by(ca.cert)
            issued = True
        except (InvalidSignature, ValueError, TypeError):
            issued = False
        serving_ok = (
            issued
            and cert.not_valid_after_utc - now >= settings.renew_before
            and set(settings.names) <= _names_of(cert)
        )
    if serving_ok and b"".join(bundle) == data.get(certs.CA_FILE):
        return None
    serving = (
        certs.Pair(data[certs.CERT_FILE], data[certs.KEY_FILE])
        if serving_ok
        else certs.new_serving(ca, list(settings.names), settings.cert_days)
    )
    return {
        certs.CA_FILE: b"".join(bundle),
        CA_KEY: ca.key_pem,
        certs.CERT_FILE: serving.cert_pem,
        certs.KEY_FILE: serving.key_pem,
    }


@dataclass
class SelfManager:
    """The Kubernetes side: Secret, files, caBundle. Call `sync()` periodically."""

    settings: Settings
    cert_dir: Path
    core: Any  # kubernetes.client.CoreV1Api
    admission: Any  # kubernetes.client.AdmissionregistrationV1Api
    bundle: bytes = b""
    synced_configs: set[str] = field(default_factory=set)

    def sync(self) -> None:
        """Make the Secret, the files on disk and the caBundles agree, renewing what is due."""
        data = self._ensure_secret()
        self._write_files(data)
        self.bundle = data[certs.CA_FILE]
        self._sync_ca_bundles()

    def _read(self) -> tuple[dict[str, bytes] | None, str | None]:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self.core.read_namespaced_secret(self.settings.secret_name, self.settings.namespace)
        except ApiException as e:
            if e.status == 404:
                return None, None
            raise
        raw = secret.data or {}
        return {k: base64.b64decode(v) for k, v in raw.items()}, secret.metadata.resource_version

    def _ensure_secret(self) -> dict[str, bytes]:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        for _attempt in range(5):
            current, version = self._read()
            wanted = secret_update(current, self.settings)
            if wanted is None:  # only for a Secret that is fine as it is: with none, secret_update() makes one
                assert current is not None
                return current
            body = client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name=self.settings.secret_name,
                    namespace=self.settings.namespace,
                    resource_version=version,
                    labels={"app.kubernetes.io/managed-by": "vllm-ep-webhook"},
                ),
                type="kubernetes.io/tls",
                data={k: base64.b64encode(v).decode() for k, v in wanted.items()},
            )
            try:
                if current is None:
                    self.core.create_namespaced_secret(self.settings.namespace, body)
                    log.info("created certificate secret", extra={"fields": {"secret": self.settings.secret_name}})
                else:
                    self.core.replace_namespaced_secret(self.settings.secret_name, self.settings.namespace, body)
                    log.info("renewed certificates", extra={"fields": {"secret": self.settings.secret_name}})
                return wanted
            except ApiException as e:
                if e.status in (409, 422):  # another replica won the race: read theirs
                    continue
                raise
        raise RuntimeError(f"could not settle Secret {self.settings.secret_name} after 5 attempts")

    def _write_files(self, data: dict[str, bytes]) -> None:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        targets = {certs.CA_FILE: 0o644, certs.KEY_FILE: 0o600, certs.CERT_FILE: 0o644}
        for name, mode in targets.items():
            path = self.cert_dir / name
            if not path.exists() or path.read_bytes() != data[name]:
                certs.write_file(path, data[name], mode)

    def _sync_ca_bundles(self) -> None:
        from kubernetes.client.exceptions import ApiException

        encoded = base64.b64encode(self.bundle).decode()
        kinds = [
            (name, self.admission.read_mutating_webhook_configuration, self.admission.replace_mutating_webhook_configuration)
            for name in self.settings.mutating_configs
        ] + [
            (name, self.admission.read_validating_webhook_configuration, self.admission.replace_validating_webhook_configuration)
            for name in self.settings.validating_configs
        ]
        for name, read, replace in kinds:
            for _attempt in range(5):
                try:
                    config = read(name)
                except ApiException as e:
                    if e.status == 404:
                        log.warning("webhook configuration not found yet", extra={"fields": {"name": name}})
                        self.synced_configs.discard(name)
                        break
                    raise
                hooks = config.webhooks or []
                if all(h.client_config.ca_bundle == encoded for h in hooks):
                    self.synced_configs.add(name)
                    break
                for h in hooks:
                    h.client_config.ca_bundle = encoded
                try:
                    replace(name, config)
                    self.synced_configs.add(name)
                    log.info("updated caBundle", extra={"fields": {"name": name}})
                    break
                except ApiException as e:
                    if e.status != 409:
                        raise


def run_forever(manager: SelfManager, interval: float, retry: float, stop: threading.Event) -> None:
    """Re-sync every `interval` seconds, sooner after a failure or a missing configuration."""
    while not stop.is_set():
        pending = set(manager.settings.mutating_configs + manager.settings.validating_configs) - manager.synced_configs
        if stop.wait(retry if pending else interval):
            return
        try:
            manager.sync()
        except Exception:  # the API server may be briefly unreachable: keep serving, try again
            log.exception("certificate sync failed; retrying")
            if stop.wait(retry):
                return


def load_clients(api: Any) -> tuple[Any, Any]:
    """The core and admissionregistration clients for an API client."""
    from kubernetes import client

    return client.CoreV1Api(api), client.AdmissionregistrationV1Api(api)


def names_for(service: str, namespace: str, extra: Sequence[str]) -> tuple[str, ...]:
    """The DNS names of a Service in a namespace, plus extra names."""
    return tuple(dict.fromkeys([*certs.service_names(service, namespace), *extra]))
