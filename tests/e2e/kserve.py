"""KServe's own controllers (`manager`, `llmisvc`) running against the e2e API server.

Binaries and manifests come from `scripts/kserve-bins.sh` (a cached build of KServe from the Go module
proxy, or VLLM_EP_KSERVE_BINS). `KServe.start` installs what KServe needs into the session's cluster,
starts both controllers as processes and registers KServe's admission webhooks by URL, next to ours:

- CRDs: KServe's `config/crd/full` and LWS's `config/crd/bases`. The session already installed the
  project's CRDs (`../shared/crds`, a KServe commit after v0.20.0 whose schemas are a superset of
  v0.20.0's); those are kept, so every e2e test sees the same schema whatever ran before, and only the
  CRDs missing from the cluster are created. A kept CRD must serve every version that v0.20.0's own
  CRD serves, or the start fails saying which.
- Namespace `kserve` with ConfigMap `inferenceservice-config` (Standard deployment mode, no ingress,
  no Istio) and the LLMInferenceServiceConfig presets from KServe's `config/llmisvcconfig`.
- ClusterServingRuntimes from `../shared/kserve/runtimes` (KServe's `config/runtimes`).
- The controllers: `POD_NAMESPACE=kserve`, the admin kubeconfig, metrics off, health probes on
  127.0.0.1, webhook servers on free ports. controller-runtime reads its serving certificate from
  `$TMPDIR/k8s-webhook-server/serving-certs`, so each process gets a private TMPDIR holding a pair
  signed by a fresh CA (that the webhook configurations trust). Their webhook servers listen on every
  interface (KServe has no option for the address); we only ever reach them on 127.0.0.1. Logs go to
  files, attached to the report of a failing test.
- KServe's webhooks (`config/webhook/manifests.yaml` and its `llmisvc/` one): the same names, rules
  and paths, with `clientConfig.url` pointing at the process that serves them, and limited to
  namespaces labelled LABEL (plus `kserve`), so that the objects of other e2e tests are never
  defaulted or validated by KServe.

KServe's controllers watch every namespace and put finalizers and status on every InferenceService;
tests using the `kserve` fixture therefore run after all other tests of the session (see
`pytest_collection_modifyitems` in tests/conftest.py).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.cluster import ROOT, free_port
from tests.helpers import RUNTIMES_DIR, yaml_documents
from webhook.tls import certs

BINS_ENV = "VLLM_EP_KSERVE_BINS"
RUNTIMES_ENV = "EP_WEBHOOK_KSERVE_RUNTIMES_DIR"
NAMESPACE = "kserve"
LABEL = "e2e-kserve"
GROUP = "serving.kserve.io"

# The minimum of KServe's `inferenceservice-config` for Standard (raw Deployment) mode without a
# service mesh or ingress: values of KServe's own keys, as documented in its config/configmap.
INFERENCESERVICE_CONFIG = {
    "deploy": {"defaultDeploymentMode": "Standard"},
    "ingress": {
        "ingressGateway": "knative-serving/knative-ingress-gateway",
        "ingressDomain": "example.com",
        "disableIstioVirtualHost": True,
        "disableIngressCreation": True,
    },
    "storageInitializer": {
        "image": "kserve/storage-initializer:v0.20.0",
        "memoryRequest": "100Mi", "memoryLimit": "1Gi", "cpuRequest": "100m", "cpuLimit": "1",
    },
    "inferenceService": {},
}


def runtimes_dir() -> Path:
    return Path(os.environ.get(RUNTIMES_ENV) or RUNTIMES_DIR)


def _script(*args: str) -> Path:
    """Run scripts/kserve-bins.sh; a failure (build or download) raises with the script's own reason."""
    script = ROOT / "scripts" / "kserve-bins.sh"
    done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed (exit {done.returncode}); "
                           f"KServe is needed for the KServe e2e tests:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def kserve_binaries() -> Path:
    return _script()


def kserve_manifests() -> Path:
    return _script("--config")


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml_documents(path.read_text()) if isinstance(d, dict)]


def plain(api: client.ApiClient, obj: object) -> dict[str, Any]:
    """An object read with the typed client, as the JSON the API server sent."""
    out = api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    assert isinstance(out, dict)
    return out


def as_body(obj: dict[str, Any]) -> Any:
    """A manifest as a request body: the client sends dicts as they are (its stubs ask for models)."""
    return cast(Any, obj)


def _served(crd: dict[str, Any]) -> set[str]:
    return {v["name"] for v in crd["spec"]["versions"] if v.get("served")}


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    webhook_port: int
    probe_port: int

    def logs(self, tail: int = 6000) -> str:
        return f"--- {self.name} (exit {self.popen.poll()})\n" + self.log.read_text(errors="replace")[-tail:]


@dataclass
class KServe:
    workdir: Path
    bins: Path
    manifests: Path
    api: client.ApiClient
    kubeconfig: Path
    procs: dict[str, Proc] = field(default_factory=dict)
    ca_pem: bytes = b""
    webhook_configs: list[tuple[str, str]] = field(default_factory=list)

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.install_crds()
        self.create_namespace()
        bundle = certs.generate(["localhost", "127.0.0.1"])
        self.ca_pem = bundle.ca.cert_pem
        # llmisvc's webhooks validate the presets and its defaulter serves LLMInferenceServices: it
        # starts first; manager's defaulter reads the ConfigMap, created above.
        for name in ("llmisvc", "manager"):
            self.spawn(name, bundle)
        for proc in self.procs.values():
            self.wait_ready(proc)
        self.register_webhooks()
        self.wait_for_webhooks()
        self.apply_presets()
        self.apply_runtimes()

    def install_crds(self) -> None:
        ext = client.ApiextensionsV1Api(self.api)
        files = sorted((self.manifests / "crd").rglob("*.yaml")) + sorted((self.manifests / "lws-crd").glob("*.yaml"))
        names: list[str] = []
        for path in files:
            for doc in yaml_docs(path):
                if doc.get("kind") != "CustomResourceDefinition" or "versions" not in doc.get("spec", {}):
                    continue  # kustomize patches (conversion webhooks) are not CRDs
                name = doc["metadata"]["name"]
                try:
                    ext.create_custom_resource_definition(as_body(doc))
                except ApiException as e:
                    if e.status != 409:
                        raise
                    kept = plain(self.api, ext.read_custom_resource_definition(name))
                    missing = _served(doc) - _served(kept)
                    if missing:
                        raise RuntimeError(f"CRD {name} in the cluster does not serve {sorted(missing)}, "
                                           f"which KServe's own {path.name} serves") from None
                names.append(name)
        deadline = time.monotonic() + 60
        for name in names:
            while True:
                conditions = plain(self.api, ext.read_custom_resource_definition(name)).get("status", {}).get("conditions")
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions or []):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not established")
                time.sleep(0.2)

    def create_namespace(self) -> None:
        core = client.CoreV1Api(self.api)
        core.create_namespace(as_body({"metadata": {"name": NAMESPACE, "labels": {LABEL: "true"}}}))
        core.create_namespaced_config_map(NAMESPACE, as_body({
            "metadata": {"name": "inferenceservice-config"},
            "data": {k: json.dumps(v) for k, v in INFERENCESERVICE_CONFIG.items()},
        }))

    def spawn(self, name: str, bundle: certs.Bundle) -> None:
        tmpdir = self.workdir / f"{name}-tmp"
        certs.write_bundle(tmpdir / "k8s-webhook-server" / "serving-certs", bundle)
        webhook_port, probe_port = free_port(), free_port()
        log = self.workdir / f"{name}.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmpdir), "TMPDIR": str(tmpdir),
            "KUBECONFIG": str(self.kubeconfig), "POD_NAMESPACE": NAMESPACE,
        }
        cmd = [str(self.bins / name), f"--webhook-port={webhook_port}", "--metrics-addr=0",
               f"--health-probe-addr=127.0.0.1:{probe_port}"]
        with open(log, "wb") as out:
            popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmpdir,
                                     start_new_session=True)
        self.procs[name] = Proc(name, popen, log, webhook_port, probe_port)

    def wait_ready(self, proc: Proc, timeout: float = 120) -> None:
        """Ready: its health probe answers /readyz and its webhook server completes a TLS handshake."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        deadline = time.monotonic() + timeout
        while True:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"KServe's {proc.name} exited:\n{proc.logs()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{proc.probe_port}/readyz", timeout=2) as r:
                    ready = r.status == 200
                if ready:
                    with socket.create_connection(("127.0.0.1", proc.webhook_port), timeout=2) as sock:
                        with ctx.wrap_socket(sock, server_hostname="localhost"):
                            return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"KServe's {proc.name} not ready after {timeout:.0f} s:\n{proc.logs()}")
            time.sleep(0.3)

    def webhook_configurations(self) -> list[dict[str, Any]]:
        """KServe's webhook configurations, pointed at the processes by URL and limited to LABEL namespaces."""
        out = []
        sources = [("manager", self.manifests / "webhook" / "manifests.yaml"),
                   ("llmisvc", self.manifests / "webhook" / "llmisvc" / "manifests.yaml")]
        ca = base64.b64encode(self.ca_pem).decode()
        for proc_name, path in sources:
            port = self.procs[proc_name].webhook_port
            for doc in yaml_docs(path):
                doc = copy.deepcopy(doc)
                doc["metadata"] = {"name": doc["metadata"]["name"]}
                for hook in doc["webhooks"]:
                    service_path = hook["clientConfig"]["service"]["path"]
                    hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{service_path}", "caBundle": ca}
                    selector = hook.setdefault("namespaceSelector", {})
                    selector.setdefault("matchLabels", {})[LABEL] = "true"
                out.append(doc)
        return out

    def register_webhooks(self) -> None:
        adm = client.AdmissionregistrationV1Api(self.api)
        for doc in self.webhook_configurations():
            if doc["kind"] == "MutatingWebhookConfiguration":
                adm.create_mutating_webhook_configuration(as_body(doc))
            else:
                adm.create_validating_webhook_configuration(as_body(doc))
            self.webhook_configs.append((doc["kind"], doc["metadata"]["name"]))

    def wait_for_webhooks(self, timeout: float = 30) -> None:
        """The API server picks configurations up asynchronously: dry-run probes until both of KServe's
        InferenceService webhooks answer (its defaulter sets the deployment mode, its validator refuses
        `name` on a standard predictor)."""
        objs = client.CustomObjectsApi(self.api)
        probe: dict[str, Any] = {
            "apiVersion": f"{GROUP}/v1beta1", "kind": "InferenceService", "metadata": {"name": "kserve-probe"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "vLLM"}, "storageUri": "pvc://m/m"}}},
        }
        invalid = copy.deepcopy(probe)
        invalid["spec"]["predictor"]["model"]["name"] = "not-allowed"
        deadline = time.monotonic() + timeout
        defaulted = validated = False
        while not (defaulted and validated):
            if not defaulted:
                out = plain(self.api, objs.create_namespaced_custom_object(
                    GROUP, "v1beta1", NAMESPACE, "inferenceservices", probe, dry_run="All"))
                defaulted = "serving.kserve.io/deploymentMode" in (out["metadata"].get("annotations") or {})
            if not validated:
                try:
                    objs.create_namespaced_custom_object(GROUP, "v1beta1", NAMESPACE, "inferenceservices",
                                                         invalid, dry_run="All")
                except ApiException as e:
                    validated = e.status in (400, 403, 422) and "kserve-webhook-server.validator" in str(e.body)
            if time.monotonic() > deadline:
                raise RuntimeError(f"KServe's webhooks never answered (defaulter {defaulted}, "
                                   f"validator {validated}):\n{self.logs()}")
            time.sleep(0.3)

    def apply_presets(self) -> None:
        objs = client.CustomObjectsApi(self.api)
        for path in sorted((self.manifests / "llmisvcconfig").glob("config-*.yaml")):
            for doc in yaml_docs(path):
                version = doc["apiVersion"].split("/")[1]
                objs.create_namespaced_custom_object(GROUP, version, NAMESPACE, "llminferenceserviceconfigs", doc)

    def apply_runtimes(self) -> None:
        objs = client.CustomObjectsApi(self.api)
        folder = runtimes_dir()
        files = sorted(folder.glob("*.yaml"))
        if not files:
            raise RuntimeError(f"no ClusterServingRuntimes in {folder}; set {RUNTIMES_ENV} to KServe's config/runtimes")
        for path in files:
            for doc in yaml_docs(path):
                if doc.get("kind") == "ClusterServingRuntime":
                    objs.create_cluster_custom_object(GROUP, "v1alpha1", "clusterservingruntimes", doc)

    # -- use ---------------------------------------------------------------------------------

    def check_running(self) -> None:
        for proc in self.procs.values():
            if proc.popen.poll() is not None:
                raise RuntimeError(f"KServe's {proc.name} exited:\n{proc.logs()}")

    def wait_for(self, what: str, get: Callable[[], Any], timeout: float = 60) -> Any:
        """Poll get() until it returns something truthy (ApiException 404 counts as not yet);
        on timeout raise with the controllers' logs."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            self.check_running()
            try:
                last = get()
                if last:
                    return last
            except ApiException as e:
                if e.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r:.500})\n"
                                     f"{self.logs()}")
            time.sleep(0.25)

    def logs(self) -> str:
        return "\n".join(p.logs() for p in self.procs.values())

    def stop(self) -> None:
        try:
            adm = client.AdmissionregistrationV1Api(self.api)
            for kind, name in self.webhook_configs:
                if kind == "MutatingWebhookConfiguration":
                    adm.delete_mutating_webhook_configuration(name)
                else:
                    adm.delete_validating_webhook_configuration(name)
        except (ApiException, OSError):
            pass  # the API server may already be gone; the processes are stopped regardless
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
