"""End to end: kubectl-equivalent calls against a real kube-apiserver with the webhook registered."""

from __future__ import annotations

import base64
import copy
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import WEBHOOK_CONFIG, wait_for_webhook, webhook_configuration
from tests.helpers import isvc
from tests.server_harness import Server, free_port, server_with_new_certs
from tests.vllm_grammar import parse_launch
from webhook.tls import certs
from webhook.core.annotations import UNDO_RECORD

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
SCRIPT = (
    "set -ex\n"
    "# one rank per GPU, computed at start\n"
    "GPU_COUNT=$(nvidia-smi -L | wc -l)\n"
    "exec python3 -m vllm.entrypoints.openai.api_server \\\n"
    "  --model /mnt/models --served-model-name {{.Name}} \\\n"
    "  --tensor-parallel-size ${GPU_COUNT}\n"
)


def objects(api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


def manifest(name: str, command: list[str] | None = None, **kw: Any) -> dict[str, Any]:
    obj = isvc(command=command, **kw)
    obj["metadata"] = {"name": name, "annotations": obj["metadata"]["annotations"]}
    return obj


def create(api: client.ApiClient, ns: str, obj: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], Any]:
    data, _status, headers = objects(api).create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, ns, PLURAL, obj, **kw)
    return data, headers


def get(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = objects(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return out


def replace(api: client.ApiClient, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = objects(api).replace_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, obj["metadata"]["name"], obj)
    return out


def model(obj: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = obj["spec"]["predictor"]["model"]
    return m


def reviews(server: Server) -> float:
    return sum(v for k, v in server.metrics().items() if k.startswith("ep_webhook_reviews_total"))


def test_create_stores_the_ep_command_for_a_list_command(api: client.ApiClient, registered: Server, namespace: str) -> None:
    stored, headers = create(api, namespace, manifest("list", ["vllm", "serve", "/mnt/models", "-tp", "8"]))
    ns = parse_launch(model(stored)["command"])
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 8)
    assert model(get(api, namespace, "list")) == model(stored)
    assert "replaced -tp 8 with 1" in headers.get("Warning", "")


def test_create_stores_the_ep_command_inside_a_bash_script(api: client.ApiClient, registered: Server, namespace: str) -> None:
    stored, _ = create(api, namespace, manifest("script", ["bash", "-c", SCRIPT, "bash"], limits={"nvidia.com/gpu": "4"}))
    script = model(stored)["command"][2]
    assert script.startswith(SCRIPT.split("--tensor-parallel-size")[0])
    assert script.endswith("--tensor-parallel-size 1 \\\n  --enable-expert-parallel \\\n  --data-parallel-size 4\n")
    assert model(stored)["command"][3] == "bash"


def test_a_denial_reaches_the_client_with_the_engines_message(api: client.ApiClient, registered: Server, namespace: str) -> None:
    with pytest.raises(ApiException) as denied:
        create(api, namespace, manifest("one-gpu", ["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"}))
    assert denied.value.status == 403
    body = json.loads(denied.value.body)
    assert "denied the request" in body["message"] and "at least 2 GPUs" in body["message"]


def test_server_side_dry_run_is_mutated_but_not_stored(api: client.ApiClient, registered: Server, namespace: str) -> None:
    out, _ = create(api, namespace, manifest("dry", ["vllm", "serve", "m"]), dry_run="All")
    assert parse_launch(model(out)["command"]).data_parallel_size == 8
    with pytest.raises(ApiException) as missing:
        get(api, namespace, "dry")
    assert missing.value.status == 404


def test_gpu_updates_follow_and_turning_ep_off_restores_the_command(api: client.ApiClient, registered: Server, namespace: str) -> None:
    original = ["bash", "-c", SCRIPT, "bash"]
    create(api, namespace, manifest("life", original))
    live = get(api, namespace, "life")
    model(live)["resources"]["limits"]["nvidia.com/gpu"] = "2"
    updated = replace(api, namespace, live)
    assert "--data-parallel-size 2" in model(updated)["command"][2]
    assert model(updated)["command"][2].count("--data-parallel-size") == 1
    updated["metadata"]["annotations"]["ep.enabled"] = "false"
    off = replace(api, namespace, updated)
    assert model(off)["command"] == original
    assert UNDO_RECORD not in off["metadata"]["annotations"]


def test_undo_through_the_api_server_keeps_an_edit_and_follows_kserve_container(
        api: client.ApiClient, registered: Server, namespace: str) -> None:
    # issue 23 items 6 and 7, on objects as the API server stores them
    obj = manifest("intent", ["vllm", "serve", "m", "--max-model-len", "4096", "-tp", "8"])
    create(api, namespace, obj)
    live = get(api, namespace, "intent")
    command = model(live)["command"]
    command[command.index("4096")] = "32768"  # the user's edit, the webhook's flags kept
    edited = replace(api, namespace, live)
    edited["metadata"]["annotations"]["ep.enabled"] = "false"
    off = replace(api, namespace, edited)
    assert model(off)["command"] == ["vllm", "serve", "m", "--max-model-len", "32768", "-tp", "8"]

    custom = manifest("custom")
    custom["spec"]["predictor"] = {"containers": [{
        "name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0", "command": ["vllm", "serve", "m", "-tp", "8"],
        "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}
    create(api, namespace, custom)
    live = get(api, namespace, "custom")
    live["spec"]["predictor"]["containers"].insert(0, {"name": "sidecar", "image": "busybox", "command": ["sleep", "1d"]})
    inserted = replace(api, namespace, live)
    inserted["metadata"]["annotations"]["ep.enabled"] = "false"
    off = replace(api, namespace, inserted)
    containers = off["spec"]["predictor"]["containers"]
    assert [c["name"] for c in containers] == ["sidecar", "kserve-container"]
    assert containers[1]["command"] == ["vllm", "serve", "m", "-tp", "8"] and "volumeMounts" not in containers[1]
    assert UNDO_RECORD not in off["metadata"]["annotations"]


def test_objects_without_the_annotation_never_reach_the_webhook(api: client.ApiClient, registered: Server, namespace: str) -> None:
    before = reviews(registered)
    plain = manifest("plain", ["vllm", "serve", "m", "-tp", "8"], enabled=None)
    stored, _ = create(api, namespace, plain)
    stored["spec"]["predictor"]["minReplicas"] = 2
    replace(api, namespace, stored)
    assert reviews(registered) == before
    assert model(get(api, namespace, "plain"))["command"] == ["vllm", "serve", "m", "-tp", "8"]
    create(api, namespace, manifest("annotated", ["vllm", "serve", "m"]))
    assert reviews(registered) == before + 1


def test_the_stored_object_keeps_every_field_through_kserves_schema(api: client.ApiClient, registered: Server, namespace: str) -> None:
    obj = manifest("schema", ["vllm", "serve", "m"], annotations={"ep.eplb": "true", "ep.all2all-backend": "pplx"})
    model(obj)["env"] = [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}]
    obj["spec"]["predictor"]["minReplicas"] = 1
    stored, _ = create(api, namespace, obj)
    expected = copy.deepcopy(obj)
    model(expected)["command"] = model(stored)["command"]
    expected["metadata"]["annotations"][UNDO_RECORD] = stored["metadata"]["annotations"][UNDO_RECORD]
    assert stored["spec"] == expected["spec"]
    assert stored["metadata"]["annotations"] == expected["metadata"]["annotations"]
    assert model(stored)["command"][-3:] == ["8", "--all2all-backend", "pplx"] or "--enable-eplb" in model(stored)["command"]


# -- failure policy with the webhook down -------------------------------------------------------------


@pytest.fixture()
def stopped_webhook(api: client.ApiClient, registered: Server, tmp_path: Path) -> Iterator[None]:
    """Point the configuration at a webhook server that is then stopped; restore afterwards."""
    adm = client.AdmissionregistrationV1Api(api)
    with server_with_new_certs(tmp_path) as doomed:
        conf = adm.read_mutating_webhook_configuration(WEBHOOK_CONFIG)
        conf.webhooks[0].client_config.url = f"https://127.0.0.1:{doomed.port}/mutate"
        conf.webhooks[0].client_config.ca_bundle = base64.b64encode(doomed.ca().read_bytes()).decode()
        adm.replace_mutating_webhook_configuration(WEBHOOK_CONFIG, conf)
        wait_for_webhook(api, doomed)
    try:
        yield
    finally:
        conf = adm.read_mutating_webhook_configuration(WEBHOOK_CONFIG)
        conf.webhooks[0].client_config.url = f"https://127.0.0.1:{registered.port}/mutate"
        conf.webhooks[0].client_config.ca_bundle = base64.b64encode(registered.ca().read_bytes()).decode()
        adm.replace_mutating_webhook_configuration(WEBHOOK_CONFIG, conf)
        wait_for_webhook(api, registered)


def test_failure_policy_fail_refuses_annotated_creates_while_the_webhook_is_down(
    api: client.ApiClient, stopped_webhook: None, namespace: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(api, namespace, manifest("needs-webhook", ["vllm", "serve", "m"]))
    message = json.loads(refused.value.body)["message"]
    assert "ep.vllm-ep-webhook.io" in message and "failed calling webhook" in message
    stored, _ = create(api, namespace, manifest("no-webhook-needed", ["vllm", "serve", "m"], enabled=None))
    assert model(stored)["command"] == ["vllm", "serve", "m"]


# -- a second mutating webhook and reinvocation ----------------------------------------------------------


class _AppendArg(BaseHTTPRequestHandler):
    """Another team's webhook: appends --max-model-len=4096 to args when missing."""

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        obj = review["request"]["object"]
        args = obj["spec"]["predictor"]["model"].get("args")
        response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
        if args is None or "--max-model-len=4096" not in args:
            op = {"op": "add", "path": "/spec/predictor/model/args", "value": ["--max-model-len=4096"]} if args is None \
                else {"op": "add", "path": "/spec/predictor/model/args/-", "value": "--max-model-len=4096"}
            response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps([op]).encode()).decode())
        body = json.dumps({"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": response}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture()
def second_webhook(api: client.ApiClient, registered: Server, tmp_path: Path) -> Iterator[None]:
    bundle = certs.generate(["127.0.0.1"])
    certs.write_bundle(tmp_path, bundle)
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _AppendArg)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    conf = webhook_configuration(f"https://127.0.0.1:{port}/", bundle.ca.cert_pem)
    conf["metadata"]["name"] = "zz-append-max-model-len"  # runs after ours (configurations go by name)
    conf["webhooks"][0]["name"] = "append.example.com"
    adm = client.AdmissionregistrationV1Api(api)
    adm.create_mutating_webhook_configuration(conf)
    time.sleep(2)
    try:
        yield
    finally:
        adm.delete_mutating_webhook_configuration("zz-append-max-model-len")
        httpd.shutdown()
        time.sleep(1)


def test_reinvocation_next_to_another_mutating_webhook_duplicates_nothing(
    api: client.ApiClient, second_webhook: None, registered: Server, namespace: str
) -> None:
    before = reviews(registered)
    obj = manifest("two-hooks", ["python3", "-m", "vllm.entrypoints.openai.api_server"], args=["--model=/mnt/models", "-tp=8"])
    stored, _ = create(api, namespace, obj)
    args = model(stored)["args"]
    assert args.count("--max-model-len=4096") == 1
    ns = parse_launch(model(stored)["command"] + args)
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.max_model_len) == (1, 8, 4096)
    flat = " ".join(args)
    assert flat.count("--enable-expert-parallel") == 1 and flat.count("--data-parallel-size") == 1
    assert reviews(registered) - before == 2, "reinvoked once after the other webhook changed the object"
    off = copy.deepcopy(stored)
    off["metadata"]["annotations"]["ep.enabled"] = "false"
    restored = replace(api, namespace, off)
    assert model(restored)["args"] == ["--model=/mnt/models", "-tp=8", "--max-model-len=4096"]
