"""Latency of InferenceService creates through a real API server, with and without the webhook.

    python bench/e2e_latency.py [--creates 300]

Starts etcd + kube-apiserver on loopback (tests/e2e/cluster.py), installs the
KServe CRDs, then measures sequential creates of annotated InferenceServices:
first with no webhook registered, then with `ep-webhook serve` registered (so
the webhook really mutates every create). Every create is a different object:
its name and a flag value (`--max-model-len N`) change each time, as real
clients' objects do. Prints p50/p99 of both and the difference. Bounded: a
fixed number of creates per phase.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402

from tests.e2e.cluster import Cluster, k8s_binaries  # noqa: E402
from tests.e2e.conftest import install_crds, new_client, wait_for_webhook, webhook_configuration  # noqa: E402
from tests.helpers import isvc  # noqa: E402
from tests.server_harness import running_server  # noqa: E402
from webhook.tls import certs  # noqa: E402


def measure(api: client.ApiClient, ns: str, n: int, prefix: str) -> list[float]:
    """Seconds each of `n` creates took; object i is named PREFIX-i and serves with --max-model-len 1024+i."""
    objs = client.CustomObjectsApi(api)
    out = []
    for i in range(n):
        obj = isvc(command=["vllm", "serve", "/mnt/models", "--max-model-len", str(1024 + i), "--tensor-parallel-size", "8"])
        obj["metadata"] = {"name": f"{prefix}-{i}", "annotations": obj["metadata"]["annotations"]}
        started = time.perf_counter()
        objs.create_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices", obj)
        out.append(time.perf_counter() - started)
    return out


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of `values` (seconds), in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creates", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "cluster", k8s_binaries())
        try:
            cluster.start()
            api = new_client(cluster.kubeconfig)
            install_crds(api)
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": "bench"}})
            measure(api, "bench", 20, "warm")  # warm caches and connections
            without = measure(api, "bench", args.creates, "plain")
            cert_dir = Path(tmp) / "certs"
            certs.write_bundle(cert_dir, certs.generate(["127.0.0.1", "localhost"]))
            with running_server(cert_dir, Path(tmp) / "webhook.log") as server:
                adm = client.AdmissionregistrationV1Api(api)
                adm.create_mutating_webhook_configuration(
                    webhook_configuration(f"https://127.0.0.1:{server.port}/mutate", server.ca().read_bytes()))
                wait_for_webhook(api, server)
                measure(api, "bench", 20, "warm-hook")
                with_hook = measure(api, "bench", args.creates, "hooked")
                stored = client.CustomObjectsApi(api).get_namespaced_custom_object(
                    "serving.kserve.io", "v1beta1", "bench", "inferenceservices", f"hooked-{args.creates - 1}")
                assert "--enable-expert-parallel" in stored["spec"]["predictor"]["model"]["command"], stored
        finally:
            cluster.stop()
    print(f"{'case':<16}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, values in (("no webhook", without), ("with webhook", with_hook)):
        print(f"{name:<16}{len(values):>6}{pct(values, 50):>10.2f}{pct(values, 99):>10.2f}"
              f"{statistics.mean(values) * 1000:>10.2f}")
    print(f"{'difference':<16}{'':>6}{pct(with_hook, 50) - pct(without, 50):>+10.2f}"
          f"{pct(with_hook, 99) - pct(without, 99):>+10.2f}"
          f"{(statistics.mean(with_hook) - statistics.mean(without)) * 1000:>+10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
