"""The API server while the webhook restarts, under failurePolicy Fail and Ignore."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.e2e.conftest import wait_for_webhook, webhook_configuration
from tests.e2e.test_admission import create, manifest, model
from tests.server_harness import free_port, running_server
from webhook.tls import certs

SERVE = ["vllm", "serve", "/mnt/models"]


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_webhook_restart_is_fail_closed_or_fail_open_as_configured(
    api: client.ApiClient, tmp_path: Path, policy: str
) -> None:
    ns = f"restart-{policy.lower()}-{uuid.uuid4().hex[:6]}"
    # the e2e-policy label keeps the opt-in webhook of the other tests out of this namespace
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns, "labels": {"e2e-policy": "restart"}}})
    cert_dir = tmp_path / "certs"
    certs.write_bundle(cert_dir, certs.generate(["127.0.0.1", "localhost"]))
    port = free_port()
    name = f"ep-restart-{policy.lower()}"
    conf = webhook_configuration(f"https://127.0.0.1:{port}/mutate", (cert_dir / "ca.crt").read_bytes(), policy)
    conf["metadata"]["name"] = name
    conf["webhooks"][0]["name"] = f"{name}.vllm-ep-webhook.io"
    conf["webhooks"][0]["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    adm = client.AdmissionregistrationV1Api(api)
    adm.create_mutating_webhook_configuration(conf)
    try:
        with running_server(cert_dir, tmp_path / "log-1", port=port) as first:
            wait_for_webhook(api, first, ns)
        # the webhook is down
        if policy == "Fail":
            with pytest.raises(ApiException) as refused:
                create(api, ns, manifest("while-down", SERVE))
            assert "failed calling webhook" in json.loads(refused.value.body)["message"]
        else:
            stored, _ = create(api, ns, manifest("while-down", SERVE))
            assert model(stored)["command"] == SERVE  # admitted, not mutated: fail open
        # back on the same address: mutation resumes without touching the configuration
        with running_server(cert_dir, tmp_path / "log-2", port=port):
            deadline = time.monotonic() + 20
            while True:
                try:
                    stored, _ = create(api, ns, manifest(f"back-{uuid.uuid4().hex[:4]}", SERVE))
                    if "--data-parallel-size" in model(stored)["command"]:
                        break
                except ApiException:
                    pass
                assert time.monotonic() < deadline, "mutation did not resume after the restart"
                time.sleep(0.5)
    finally:
        adm.delete_mutating_webhook_configuration(name)
