"""KServe's real llmisvc controller merges a namespace's own LLMInferenceServiceConfig named by baseRefs; the
webhook's forbid decision on the same objects, read back from the API server, matches what the pod runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.core.test_policy import FORBID
from tests.e2e.kserve import GROUP, KServe, plain
from tests.e2e.test_kserve_e2e import deployed_container, isvcs, launch
from tests.kserve.test_llminferenceservice import llmisvc
from tests.server_harness import Server
from webhook.admission.kinds import mutate

pytestmark = pytest.mark.e2e


def test_a_namespace_preset_with_ep_is_merged_by_kserve_and_denied_by_forbid(
        api: client.ApiClient, registered: Server, kserve: KServe, kserve_namespace: str, tmp_path: Path) -> None:
    ns, objs = kserve_namespace, isvcs(api)
    objs.create_namespaced_custom_object(GROUP, "v1alpha2", ns, "llminferenceserviceconfigs", {
        "apiVersion": f"{GROUP}/v1alpha2", "kind": "LLMInferenceServiceConfig", "metadata": {"name": "team-ep"},
        "spec": {"template": {"containers": [{"name": "main", "args": ["--enable-expert-parallel",
                                                                         "--data-parallel-size=8"]}]}},
    })
    obj: dict[str, Any] = llmisvc(enabled=None)
    obj["metadata"] = {"name": "with-preset"}
    obj["spec"]["baseRefs"] = [{"name": "team-ep"}]
    del obj["spec"]["template"]["containers"][0]["resources"]["limits"]["cpu"]
    objs.create_namespaced_custom_object(GROUP, "v1alpha2", ns, "llminferenceservices", obj)
    container = deployed_container(kserve, api, ns, "with-preset-kserve", "main")
    vllm = launch(container, tmp_path, "with-preset-kserve-0", ns)
    assert vllm.enable_expert_parallel is True  # KServe merged the namespace's preset: EP runs

    stored = plain(api, objs.get_namespaced_custom_object(GROUP, "v1alpha2", ns, "llminferenceservices", "with-preset"))
    listed = objs.list_namespaced_custom_object(GROUP, "v1alpha2", ns, "llminferenceserviceconfigs")["items"]
    configs = {c["metadata"]["name"]: c for c in listed}
    verdict = mutate(stored, FORBID, llm_configs=configs)
    assert not verdict.allowed and "LLMInferenceServiceConfig team-ep" in verdict.message
