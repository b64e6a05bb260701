"""The admission server over real TLS on loopback."""

from __future__ import annotations

import base64
import copy
import json
import os
import signal
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from tests.helpers import isvc
from tests.server_harness import Server, annotated, review_for, running_server, server_with_new_certs
from webhook.admission.review import MAX_VALUES
from webhook.tls import certs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("server")
    with server_with_new_certs(base) as s:
        yield s


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_reviews_are_answered_in_the_version_asked_with_the_uid_and_a_patch(server: Server, version: str) -> None:
    obj = annotated()
    status, answer = server.review(review_for(obj, api_version=version, uid=f"uid-{version}"))
    assert status == 200
    assert answer["apiVersion"] == version and answer["kind"] == "AdmissionReview"
    resp = answer["response"]
    assert resp["uid"] == f"uid-{version}" and resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(copy.deepcopy(obj), json.loads(base64.b64decode(resp["patch"])))
    assert patched["spec"]["predictor"]["model"]["command"][3:5] == ["--tensor-parallel-size", "1"]
    assert "replaced --tensor-parallel-size 8 with 1" in resp["warnings"]
    assert "spec.predictor.model.command" in resp["auditAnnotations"]["changed"]


def test_a_denial_is_allowed_false_with_code_403_and_the_engines_message(server: Server) -> None:
    obj = isvc(command=["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"})
    status, answer = server.review(review_for(obj))
    assert status == 200
    resp = answer["response"]
    assert resp["allowed"] is False and resp["status"]["code"] == 403
    assert "at least 2 GPUs" in resp["status"]["message"] and "patch" not in resp


def test_dry_run_requests_are_mutated_the_same(server: Server) -> None:
    _, wet = server.review(review_for(annotated()))
    _, dry = server.review(review_for(annotated(), dry_run=True))
    assert dry["response"]["patch"] == wet["response"]["patch"]


@pytest.mark.parametrize(
    ("kind", "group", "operation"),
    [("Pod", "", "CREATE"), ("InferenceService", "serving.kserve.io", "DELETE"),
     ("InferenceService", "serving.kserve.io", "CONNECT"), ("ServingRuntime", "serving.kserve.io", "UPDATE")],
)
def test_other_kinds_and_operations_are_allowed_without_a_patch(server: Server, kind: str, group: str, operation: str) -> None:
    status, answer = server.review(review_for(annotated(), kind=kind, group=group, operation=operation))
    assert status == 200 and answer["response"] == {"uid": answer["response"]["uid"], "allowed": True}


def test_an_unannotated_object_is_allowed_unchanged(server: Server) -> None:
    _, answer = server.review(review_for(isvc(command=["vllm", "serve", "m"], enabled=None)))
    assert answer["response"]["allowed"] is True and "patch" not in answer["response"]


def _deep(n: int) -> bytes:
    return b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":' + b"[" * n + b"]" * n + b"}"


GOOD = json.dumps(review_for(annotated())).encode()
MALFORMED = [
    ("empty body", b"", "application/json", 400),
    ("not JSON", b"{not json", "application/json", 400),
    ("non-UTF-8", b'{"apiVersion": "\xff\xfe"}', "application/json", 400),
    ("JSON but not an object", b"[1, 2]", "application/json", 400),
    ("not an AdmissionReview", json.dumps({"apiVersion": "v1", "kind": "Pod"}).encode(), "application/json", 400),
    ("unknown AdmissionReview version", GOOD.replace(b"admission.k8s.io/v1", b"admission.k8s.io/v2"), "application/json", 400),
    ("no request", b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}', "application/json", 400),
    ("no uid", GOOD.replace(b'"uid"', b'"uuid"'), "application/json", 400),
    ("uid of the wrong type", json.dumps({**review_for(1), "request": {**review_for(1)["request"], "uid": 7}}).encode(), "application/json", 400),
    ("kind of the wrong type", json.dumps({**review_for(1), "request": {**review_for(1)["request"], "kind": "InferenceService"}}).encode(), "application/json", 400),
    ("dryRun of the wrong type", json.dumps({**review_for(1), "request": {**review_for(1)["request"], "dryRun": "yes"}}).encode(), "application/json", 400),
    ("absurd nesting", _deep(100_000), "application/json", 400),
    ("wrong content type", GOOD, "text/plain", 400),
    ("no content type", GOOD, "", 400),
    ("over 3 MiB", b'{"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}', "application/json", 413),
    # 3 MB, but a million objects: decoding it took 105 MiB
    ("a million values", GOOD[:-2] + b',"pad":[' + b"{}," * 999_999 + b"{}]}}", "application/json", 413),
]


@pytest.mark.parametrize(("label", "body", "ctype", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_a_4xx_json_error_and_the_server_stays_up(
    server: Server, label: str, body: bytes, ctype: str, status: int
) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    got, payload, resp_headers = server.request("POST", "/mutate", body, headers)
    assert got == status, (label, payload[:200])
    assert resp_headers["content-type"].startswith("application/json")
    assert json.loads(payload)["error"]
    assert server.request("GET", "/healthz")[0] == 200


def _with_values(n: int) -> bytes:
    """GOOD padded with a string of commas so that its commas, [ and { number exactly `n`."""
    counted = GOOD.count(b",") + GOOD.count(b"[") + GOOD.count(b"{")
    return GOOD[:-2] + b',"pad":"' + b"," * (n - counted - 1) + b'"}}'


def test_the_value_limit_is_exact(server: Server) -> None:
    assert server.request("POST", "/mutate", _with_values(MAX_VALUES), {"Content-Type": "application/json"})[0] == 200
    assert server.request("POST", "/mutate", _with_values(MAX_VALUES + 1), {"Content-Type": "application/json"})[0] == 413


def test_an_object_the_engine_cannot_read_is_denied_not_failed(server: Server) -> None:
    _, answer = server.review(review_for({"spec": "nonsense", "metadata": {"annotations": {"ep.enabled": "true"}}}))
    assert answer["response"]["allowed"] is False and answer["response"]["status"]["code"] == 403


def test_health_readiness_and_metrics_move(server: Server) -> None:
    assert server.request("GET", "/healthz")[0] == 200
    assert server.request("GET", "/readyz")[0] == 200
    before = server.metrics()
    server.review(review_for(annotated()))
    server.review(review_for(isvc(command=["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"})))
    server.review(review_for(annotated(), operation="DELETE"))
    server.request("POST", "/mutate", b"nope", {"Content-Type": "application/json"})
    after = server.metrics()

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert delta('ep_webhook_reviews_total{operation="CREATE",outcome="mutated"}') == 1
    assert delta('ep_webhook_reviews_total{operation="CREATE",outcome="denied"}') == 1
    assert delta('ep_webhook_reviews_total{operation="DELETE",outcome="unchanged"}') == 1
    assert delta('ep_webhook_reviews_total{operation="unknown",outcome="rejected"}') == 1
    assert delta("ep_webhook_review_duration_seconds_count") == 4
    not_after = certs.not_after((server.cert_dir / "tls.crt").read_bytes()).timestamp()
    assert after["ep_webhook_certificate_not_after_seconds"] == pytest.approx(not_after)


def test_metrics_carry_the_standard_process_and_python_series_of_the_server(server: Server) -> None:
    status, body, headers = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE ep_webhook_reviews_total counter" in text
    assert "# TYPE ep_webhook_certificate_reloads_total counter" in text
    values = server.metrics()
    rss = values["process_resident_memory_bytes"]
    assert 10 * 2**20 < rss < 1024 * 2**20  # the server's own RSS, not a placeholder
    assert values["process_open_fds"] >= 3 and values["process_cpu_seconds_total"] > 0
    assert values["process_start_time_seconds"] == pytest.approx(server_started(server), abs=60)
    assert any(k.startswith("python_gc_collections_total") for k in values)
    assert any(k.startswith("python_info") for k in values)


def server_started(server: Server) -> float:
    """The server process's start, Unix time, as /proc says."""
    ticks = int(Path(f"/proc/{server.proc.pid}/stat").read_text().rpartition(")")[2].split()[19])
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def test_one_json_log_line_per_review_without_object_contents(server: Server) -> None:
    obj = annotated(["vllm", "serve", "/mnt/models/secret-model-name", "--api-key", "sk-hunter2"])
    server.review(review_for(obj, uid="log-check-uid"))
    time.sleep(0.3)
    lines = [json.loads(l) for l in server.logs().splitlines() if "log-check-uid" in l]
    assert len(lines) == 1
    entry = lines[0]
    assert {entry["uid"], entry["namespace"], entry["name"], entry["operation"], entry["outcome"]} == {
        "log-check-uid", "llm", "qwen3", "CREATE", "mutated"}
    assert isinstance(entry["duration_ms"], float)
    assert "sk-hunter2" not in server.logs() and "secret-model-name" not in server.logs()


def test_tls_below_1_2_and_plaintext_are_refused(server: Server) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(server.ca()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # old versions on purpose
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                pass
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = raw.recv(100)
        assert b"200 OK" not in data


def test_the_certs_command_writes_a_ca_and_a_serving_pair(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "webhook", "certs", "generate", "--out-dir", str(out),
                           "--service", "ep-webhook", "--namespace", "kserve", "--san", "127.0.0.1", "--days", "30"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "ep-webhook", "ep-webhook.kserve", "ep-webhook.kserve.svc", "ep-webhook.kserve.svc.cluster.local"}
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (out / "tls.key").stat().st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert 29 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 31


# -- rotation and shutdown: each with its own server ---------------------------------------


def _k8s_secret_layout(cert_dir: Path, bundle: certs.Bundle, stamp: str) -> None:
    """Write a bundle the way the kubelet updates a Secret volume: new folder, swap ..data."""
    folder = cert_dir / f"..{stamp}"
    certs.write_bundle(folder, bundle)
    tmp_link = cert_dir / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    os.symlink(folder.name, tmp_link)
    os.replace(tmp_link, cert_dir / "..data")
    for name in ("ca.crt", "tls.crt", "tls.key"):
        link = cert_dir / name
        if not link.is_symlink():
            os.symlink(f"..data/{name}", link)


def _peer_cert(port: int) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_data_symlink_rotation_takes_effect_without_restart_or_failed_requests(tmp_path: Path) -> None:
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    old = certs.generate(["localhost"])
    _k8s_secret_layout(cert_dir, old, "2026_11_27_01")
    combined_ca = tmp_path / "both.crt"
    new = certs.generate(["localhost"])
    combined_ca.write_bytes(old.ca.cert_pem + new.ca.cert_pem)
    with running_server(cert_dir, tmp_path / "log") as server:
        failures: list[str] = []
        sent = 0
        stop = threading.Event()

        def load() -> None:
            nonlocal sent
            while not stop.is_set():
                try:
                    conn = server.connect(ca=combined_ca)
                    conn.request("POST", "/mutate", json.dumps(review_for(annotated())).encode(),
                                 {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    body = resp.read()
                    conn.close()
                    if resp.status != 200 or not json.loads(body)["response"]["allowed"]:
                        failures.append(f"{resp.status}")
                except Exception as e:  # noqa: BLE001 - every failure counts
                    failures.append(repr(e))
                sent += 1

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(1)
        before = _peer_cert(server.port)
        _k8s_secret_layout(cert_dir, new, "2026_11_27_02")
        swapped = time.monotonic()
        while _peer_cert(server.port) == before:
            assert time.monotonic() - swapped < 10, "new certificate not served within 10 s"
            time.sleep(0.2)
        took = time.monotonic() - swapped
        time.sleep(1)
        stop.set()
        worker.join(timeout=30)
        assert failures == [] and sent > 10
        conn = server.connect(ca=tmp_path / "certs" / "..data" / "ca.crt")  # the new CA alone now verifies
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        assert server.metrics()["ep_webhook_certificate_reloads_total"] == 1
        print(f"rotation visible after {took:.1f}s; {sent} reviews, 0 failed")


def test_a_broken_new_certificate_keeps_the_old_one_serving(tmp_path: Path) -> None:
    with server_with_new_certs(tmp_path) as server:
        other = certs.generate(["localhost"])
        (server.cert_dir / "tls.key").write_bytes(other.serving.key_pem)  # key no longer matches the certificate
        time.sleep(2.5)
        assert server.request("GET", "/readyz")[0] == 200
        assert server.metrics()["ep_webhook_certificate_reload_failures_total"] >= 1


def test_sigterm_answers_requests_in_flight_then_exits_0(tmp_path: Path) -> None:
    with server_with_new_certs(tmp_path) as server:
        body = json.dumps(review_for(annotated(), uid="in-flight")).encode()
        conns = []
        for _ in range(5):
            conn = server.connect()
            conn.putrequest("POST", "/mutate")
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body[:100])  # the request is in flight: headers and part of the body
            conns.append(conn)
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        answers: list[Any] = []
        for conn in conns:
            conn.send(body[100:])
            resp = conn.getresponse()
            answers.append((resp.status, json.loads(resp.read())["response"]["uid"]))
            conn.close()
        assert answers == [(200, "in-flight")] * 5
        assert server.proc.wait(timeout=30) == 0


def test_idle_keep_alive_connections_do_not_delay_shutdown(tmp_path: Path) -> None:
    with server_with_new_certs(tmp_path) as server:
        idle = []
        for _ in range(3):  # like an API server's connection pool: used once, then left open
            conn = server.connect()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            idle.append(conn)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        took = time.monotonic() - started
        assert took < 5, f"shutdown took {took:.1f}s with idle connections open"


@pytest.mark.slow
def test_an_idle_connection_outlives_the_30_seconds_the_server_once_kept_it(server: Server) -> None:
    """The API server keeps idle webhook connections 90 s; the server must not close them first
    (each close costs the next admission a new handshake). 35 s idle, then the same socket answers."""
    conn = server.connect()
    body = json.dumps(review_for(annotated())).encode()
    conn.request("POST", "/mutate", body, {"Content-Type": "application/json"})
    assert conn.getresponse().read()
    sock = conn.sock
    time.sleep(35)
    conn.request("POST", "/mutate", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200 and json.loads(response.read())["response"]["allowed"] is True
    assert conn.sock is sock  # no reconnect happened


def _post_with_length(server: Server, length: str, body: bytes) -> tuple[int, bytes]:
    """POST /mutate with a Content-Length header written by hand (http.client would write the true one)."""
    conn = server.connect()
    try:
        conn.putrequest("POST", "/mutate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", length)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("zeros", [1, 5_000])
def test_a_content_length_with_thousands_of_leading_zeros_is_read_as_its_number(server: Server, zeros: int) -> None:
    # the HTTP parser passes such a header on; converting its 5,000 digits was an HTTP 500
    status, payload = _post_with_length(server, "0" * zeros + str(4 * 1024 * 1024), b"")
    assert status == 413 and json.loads(payload)["error"]
    status, payload = _post_with_length(server, "0" * zeros + str(len(GOOD)), GOOD)
    assert status == 200 and json.loads(payload)["response"]["allowed"] is True
    assert server.request("GET", "/healthz")[0] == 200
