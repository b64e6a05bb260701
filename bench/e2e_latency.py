"""Added create latency through a real API server: ep-webhook against a Go webhook, in the same run.

    python bench/e2e_latency.py [--creates 600] [--rounds 6]

Starts etcd + kube-apiserver on loopback (tests/e2e/cluster.py), installs the
KServe CRDs, starts `ep-webhook serve` and two Go standard-library webhooks
of bench/gohook (the same list edit; built with the machine's `go`), then
times sequential creates of annotated InferenceServices in four cases: no
webhook registered; ep-webhook; the Go webhook (`go`: the list edit only);
the Go webhook writing an undo record like ep-webhook's (`go+undo`: the same
answer, so the API server does the same work with it); and `floor`: ep-webhook's
serving stack (uvicorn, httptools, uvloop, Python's TLS: `webhook.server.server.run`)
with an app that only reads the uid and answers a constant one-operation patch,
which says how much of ep-webhook's added time is the stack rather than the decision. The cases take turns
in `--rounds` rounds (each round: every case, `creates / rounds` creates
each), so that drift of the machine during the run falls on all alike. Every create is a different object: its name and a flag value
(`--max-model-len N`) change each time, as real clients' objects do.

Prints p50/p99/mean per case, what each webhook adds to the no-webhook
figures, and ep-webhook's added p50 minus each Go webhook's. With `--wire`
(needs tcpdump and root) the loopback traffic to each webhook is captured
while it is measured, and the webhook's time on the wire is printed: from the
last packet of a request to the first packet of its answer (its "think"
time: TLS, HTTP and the decision), and how many packets the answer takes. Bounded: a fixed number of
creates. Needs `go` (the Go case is left out without it, and said so).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kubernetes import client  # noqa: E402

from admission import FLOOR, build_go  # noqa: E402
from tests.e2e.cluster import Cluster, k8s_binaries  # noqa: E402
from tests.e2e.conftest import WEBHOOK_CONFIG, install_crds, new_client, webhook_configuration  # noqa: E402
from tests.helpers import isvc  # noqa: E402
from tests.server_harness import free_port, running_server  # noqa: E402
from webhook.core.annotations import UNDO_RECORD  # noqa: E402
from webhook.tls import certs  # noqa: E402

NAMESPACE = "bench"


def new_object(name: str, i: int) -> dict[str, Any]:
    """Annotated InferenceService `name` on 8 GPUs, serving with --max-model-len 1024+i."""
    obj = isvc(command=["vllm", "serve", "/mnt/models", "--max-model-len", str(1024 + i), "--tensor-parallel-size", "8"])
    obj["metadata"] = {"name": name, "annotations": obj["metadata"]["annotations"]}
    return obj


def measure(api: client.ApiClient, n: int, prefix: str) -> list[float]:
    """Seconds each of `n` creates took; object i is named PREFIX-i."""
    objs = client.CustomObjectsApi(api)
    out = []
    for i in range(n):
        obj = new_object(f"{prefix}-{i}", i)
        started = time.perf_counter()
        objs.create_namespaced_custom_object("serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", obj)
        out.append(time.perf_counter() - started)
    return out


def who_answers(api: client.ApiClient) -> str:
    """Which webhook the API server calls now: none, ep-webhook, floor, go or go+undo.

    ep-webhook replaces --tensor-parallel-size in place; the Go webhook drops it and appends its flags
    (so the command ends `--tensor-parallel-size 1 --data-parallel-size N`); go+undo also writes the
    undo annotation; the floor adds a label `floor`.
    """
    out = client.CustomObjectsApi(api).create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", NAMESPACE, "inferenceservices", new_object("probe", 0), dry_run="All")
    command = out["spec"]["predictor"]["model"]["command"]
    if out["metadata"].get("labels", {}).get("floor") == "1":
        return "floor"
    if "--data-parallel-size" not in command:
        return "none"
    if command[-4:-2] != ["--tensor-parallel-size", "1"]:
        return "ep-webhook"
    return "go+undo" if UNDO_RECORD in out["metadata"].get("annotations", {}) else "go"


def register(api: client.ApiClient, case: str, ports: dict[str, int], ca_pem: bytes) -> None:
    """Point the webhook configuration at `case`'s server (delete it for none); wait until the API server does."""
    adm = client.AdmissionregistrationV1Api(api)
    try:
        adm.delete_mutating_webhook_configuration(WEBHOOK_CONFIG)
    except client.exceptions.ApiException as e:
        if e.status != 404:
            raise
    if case != "none":
        adm.create_mutating_webhook_configuration(
            webhook_configuration(f"https://127.0.0.1:{ports[case]}/mutate", ca_pem))
    deadline = time.monotonic() + 30
    while who_answers(api) != case:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the API server never switched to {case}")
        time.sleep(0.2)


def wire_times(capture: str, port: int) -> tuple[list[float], list[int]]:
    """From `tcpdump -tt -n -q` lines: per request, seconds from its last packet to the answer's first
    packet, and the answer's packet count (packets without payload are left out)."""
    rows = []  # (time, towards the webhook)
    for line in capture.splitlines():
        parts = line.split()
        if len(parts) < 7 or parts[-2] != "tcp" or parts[-1] == "0":
            continue
        rows.append((float(parts[0]), parts[4].rstrip(":").rsplit(".", 1)[1] == str(port)))
    think, packets = [], []
    i = 0
    while i < len(rows):
        if not rows[i][1]:
            i += 1
            continue
        j = i
        while j < len(rows) and rows[j][1]:
            j += 1
        k = j
        while k < len(rows) and not rows[k][1]:
            k += 1
        if j < len(rows):
            think.append(rows[j][0] - rows[j - 1][0])
            packets.append(k - j)
        i = k
    return think, packets


def pct(values: list[float], p: float) -> float:
    """The p-th percentile of `values` (seconds), in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--creates", type=int, default=600, help="creates per case (default 600)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds the cases take turns in (default 6)")
    parser.add_argument("--wire", action="store_true", help="capture loopback traffic with tcpdump: think time")
    args = parser.parse_args()
    per_round = max(args.creates // args.rounds, 1)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        gohook = build_go(base)
        cases = ["none", "ep-webhook", "floor"] + (["go", "go+undo"] if gohook is not None else [])
        if gohook is None:
            print("no `go` on this machine: the Go webhook is left out", file=sys.stderr)
        cluster = Cluster(base / "cluster", k8s_binaries())
        cert_dir = base / "certs"
        certs.write_bundle(cert_dir, certs.generate(["127.0.0.1", "localhost"]))
        ca_pem = (cert_dir / certs.CA_FILE).read_bytes()
        gos: list[subprocess.Popen[bytes]] = []
        in_server: list[float] = []
        times: dict[str, list[float]] = {c: [] for c in cases}
        think: dict[str, list[float]] = {c: [] for c in cases if c != "none"}
        answer_packets: dict[str, list[int]] = {c: [] for c in think}
        try:
            cluster.start()
            api = new_client(cluster.kubeconfig)
            install_crds(api)
            client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
            with running_server(cert_dir, base / "webhook.log", ["--log-level", "info"]) as server:
                ports = {"ep-webhook": server.port, "floor": free_port()}
                gos.append(subprocess.Popen([sys.executable, "-c", FLOOR, str(cert_dir), str(ports["floor"]), "echo"],
                                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                if gohook is not None:
                    for case, env in (("go", {}), ("go+undo", {"GOHOOK_UNDO": "1"})):
                        ports[case] = free_port()
                        gos.append(subprocess.Popen([str(gohook), str(cert_dir), str(ports[case])],
                                                    env={**os.environ, **env},
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                for r in range(args.rounds):
                    for case in cases:
                        register(api, case, ports, ca_pem)
                        measure(api, 10, f"warm-{case.replace('+', '-')}-{r}")  # connections to this webhook, caches
                        capture = None
                        if args.wire and case != "none":
                            capture = subprocess.Popen(
                                ["tcpdump", "-i", "lo", "-n", "-tt", "-l", "-q", f"tcp port {ports[case]}"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                            time.sleep(1)  # tcpdump attached
                        times[case].extend(measure(api, per_round, f"{case.replace('+', '-')}-{r}"))
                        if capture is not None:
                            time.sleep(0.5)
                            capture.send_signal(signal.SIGINT)
                            seen, packets = wire_times(capture.communicate(timeout=30)[0], ports[case])
                            think[case].extend(seen)
                            answer_packets[case].extend(packets)
            lines = (base / "webhook.log").read_text().splitlines()
            in_server = [json.loads(line)["duration_ms"] for line in lines if '"msg":"review"' in line]
        finally:
            for go in gos:
                go.terminate()
                go.wait(timeout=30)
            cluster.stop()
    none = times["none"]
    print(f"{'case':<14}{'creates':>8}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}{'+mean ms':>10}")
    for case in cases:
        v = times[case]
        added = "" if case == "none" else (
            f"{pct(v, 50) - pct(none, 50):>+9.2f}{pct(v, 99) - pct(none, 99):>+9.2f}"
            f"{(statistics.mean(v) - statistics.mean(none)) * 1000:>+10.2f}")
        print(f"{case:<14}{len(v):>8}{pct(v, 50):>9.2f}{pct(v, 99):>9.2f}{statistics.mean(v) * 1000:>9.2f}{added}")
    if args.wire:
        print(f"{'on the wire':<14}{'answers':>8}{'think p50 us':>14}{'p90 us':>9}{'packets/answer':>16}")
        for case, seen in think.items():
            if seen:
                print(f"{case:<14}{len(seen):>8}{pct(seen, 50) * 1000:>14.0f}{pct(seen, 90) * 1000:>9.0f}"
                      f"{statistics.median(answer_packets[case]):>16.0f}")
    if in_server:
        print(f"ep-webhook's own duration_ms (body read to answer ready), p50 over {len(in_server)} reviews: "
              f"{statistics.median(in_server):.3f} ms")
    for go in ("go", "go+undo"):
        if go in times:
            print(f"ep-webhook's added p50 minus {go}'s: {pct(times['ep-webhook'], 50) - pct(times[go], 50):+.2f} ms")
            print(f"  of which the serving stack (floor minus {go}): {pct(times['floor'], 50) - pct(times[go], 50):+.2f} ms,"
                  f" the decision (ep-webhook minus floor): {pct(times['ep-webhook'], 50) - pct(times['floor'], 50):+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
