"""Policy files, per-namespace resolution, and the engine's three modes.

What enforce, forbid and reject do to an object of any kind is written once in
tests/admission/test_rules_every_kind.py; this file keeps the policy file itself, what only an
InferenceService has (a launch that cannot be read, runtimes, models named by a storageUri or a container)
and enforce for some models only.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from tests.helpers import isvc, model, run
from tests.vllm_grammar import parse_launch
from webhook.admission.kinds import mutate
from webhook.core.policy import LabelsUnknown, PolicyError, parse
from webhook.kserve.servingruntime import RuntimeSpec
from webhook.kserve.selection import Runtimes
from webhook.core.options import Options
from webhook.core.verdict import MAX_WARNING_LENGTH

EXAMPLE = """
defaults:
  mode: optIn
  allowOptOut: true
  onConflict: override
  tensorParallelSize: 1
  maxDataParallelSize: 64
  gpuResources: [nvidia.com/gpu, amd.com/gpu, intel.com/gpu, habana.ai/gaudi, nvidia.com/gpualloc]
  all2allBackends: [pplx, deepep_low_latency]
rules:
  - namespaces: ["prod-*"]
    mode: enforce
    allowOptOut: false
  - name: forbidden-by-label
    namespaceSelector:
      matchLabels: {ep.policy: forbid}
    mode: forbid
  - namespaces: [research]
    namespaceSelector:
      matchExpressions: [{key: tier, operator: In, values: [gpu, big-gpu]}]
    onConflict: reject
    tensorParallelSize: 2
"""


def test_the_documented_shape_parses_and_resolves_first_match_wins() -> None:
    policy = parse(EXAMPLE)
    prod = policy.options_for("prod-eu", {"ep.policy": "forbid"})
    assert (prod.mode, prod.allow_opt_out, prod.rule) == ("enforce", False, "rules[0]")
    assert policy.options_for("dev", {"ep.policy": "forbid"}).mode == "forbid"
    research = policy.options_for("research", {"tier": "gpu"})
    assert (research.on_conflict, research.tensor_parallel_size, research.mode) == ("reject", 2, "optIn")
    assert policy.options_for("research", {"tier": "cpu"}) == policy.defaults
    assert policy.defaults.all2all_backends == ("pplx", "deepep_low_latency")
    assert not policy.opt_in_only and policy.uses_labels


def test_a_rule_overrides_only_the_keys_it_sets() -> None:
    policy = parse(EXAMPLE)
    prod = policy.options_for("prod-1", {})
    assert prod.on_conflict == "override" and prod.max_data_parallel_size == 64


def test_label_rules_need_known_labels() -> None:
    with pytest.raises(LabelsUnknown):
        parse(EXAMPLE).options_for("dev", None)
    assert parse(EXAMPLE).options_for("prod-x", None).mode == "enforce"  # decided before any label rule


def test_an_empty_policy_is_the_default_opt_in() -> None:
    policy = parse("")
    assert policy.defaults == Options() and policy.opt_in_only


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("defaults: {mode: always}", "defaults.mode"),
        ("defaults: {allowOptOut: 'yes'}", "defaults.allowOptOut"),
        ("defaults: {onConflict: ignore}", "defaults.onConflict"),
        ("defaults: {tensorParallelSize: 0}", "defaults.tensorParallelSize"),
        ("defaults: {maxDataParallelSize: two}", "defaults.maxDataParallelSize"),
        ("defaults: {gpuResources: []}", "defaults.gpuResources"),
        ("defaults: {gpuResources: ['bad name!']}", "defaults.gpuResources"),
        ("defaults: {all2allBackends: [nccl]}", "defaults.all2allBackends"),
        ("defaults: {tensorParalelSize: 2}", "defaults.tensorParalelSize"),
        ("rules: [{mode: enforce}]", "rules[0]"),
        ("rules: [{namespaces: prod, mode: enforce}]", "rules[0].namespaces"),
        ("rules: [{namespaces: [a], mode: on}]", "rules[0].mode"),
        ("rules: [{namespaces: [a]}, {namespaceSelector: {matchLabels: {a: 1}}}]", "rules[1].namespaceSelector.matchLabels"),
        ("rules: [{namespaceSelector: {matchExpressions: [{key: a, operator: Has}]}}]",
         "rules[0].namespaceSelector.matchExpressions[0].operator"),
        ("rules: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}}]",
         "rules[0].namespaceSelector.matchExpressions[0].values"),
        ("rules: [{namespaceSelector: {}}]", "rules[0].namespaceSelector"),
        ("rules: [{namespaces: [a], colour: red}]", "rules[0].colour"),
        ("defaults: {models: []}", "defaults.models"),
        ("defaults: {models: deepseek}", "defaults.models"),
        ("rules: [{namespaces: [a], models: ['*moe*']}]", "rules[0].models"),
        ("defaults: {mode: enforce}\nrules: [{namespaces: [a], mode: optIn, models: ['*']}]", "rules[0].models"),
        ("rules: {a: b}", "rules"),
        ("extra: 1", "policy.extra"),
        ("- a list", "policy"),
        ("defaults: [", "policy"),
    ],
)
def test_invalid_policies_name_the_bad_field(text: str, field: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value).startswith(field + ":"), str(err.value)


# -- modes in the engine -------------------------------------------------------------------------

ENFORCE = Options(mode="enforce", allow_opt_out=False, rule="prod")
FORBID = Options(mode="forbid", rule="no-ep")
SERVE = ["vllm", "serve", "/mnt/models", "-tp", "8"]


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (isvc(command=["python", "app.py"], enabled=None), "not a recognisable vLLM launch"),
        (isvc(command=SERVE, limits={"nvidia.com/gpu": "1"}, enabled=None), "at least 2 GPUs"),
        (isvc(command=SERVE, limits={"cpu": "4"}, enabled=None), "gets none"),
        (isvc(command=SERVE + ["--headless"], enabled=None), "multi-node"),
    ],
)
def test_enforce_passes_objects_ep_cannot_apply_to_untouched(obj: dict[str, Any], reason: str) -> None:
    verdict = mutate(copy.deepcopy(obj), ENFORCE)
    assert verdict.allowed and verdict.patch == ()
    assert len(verdict.warnings) == 1 and reason in verdict.warnings[0] and len(verdict.warnings[0]) <= MAX_WARNING_LENGTH


# -- enforce for some models only ------------------------------------------------------------------------

MOE_ONLY = replace(ENFORCE, models=("hf://deepseek-ai/*", "*mixtral*"))


def _with_model(uri: str | None, enabled: str | None = None, command: list[str] = SERVE) -> dict[str, Any]:
    obj = isvc(command=command, enabled=enabled)
    if uri is not None:
        model(obj)["storageUri"] = uri
    return obj


@pytest.mark.parametrize("uri", ["hf://deepseek-ai/DeepSeek-V3", "s3://models/Mixtral-8x7B"])
def test_enforce_with_models_gives_ep_to_the_models_it_names(uri: str) -> None:
    out, verdict = run(_with_model(uri), MOE_ONLY)
    assert verdict.allowed and parse_launch(model(out)["command"]).enable_expert_parallel


def test_enforce_with_models_leaves_other_models_untouched_as_opt_in_would() -> None:
    dense = _with_model("hf://meta-llama/Llama-3.1-70B")
    assert mutate(copy.deepcopy(dense), MOE_ONLY) == mutate(copy.deepcopy(dense), Options(rule="prod"))
    assert mutate(copy.deepcopy(dense), MOE_ONLY).patch == ()
    assert mutate(_with_model(None), MOE_ONLY).patch == ()  # no model named at all: not covered
    opted_out = mutate(_with_model("hf://meta-llama/Llama-3.1-70B", enabled="false"), MOE_ONLY)
    assert opted_out.allowed  # not enforced, so opting out is no offence
    asked, verdict = run(_with_model("hf://meta-llama/Llama-3.1-70B", enabled="true"), MOE_ONLY)
    assert verdict.allowed and parse_launch(model(asked)["command"]).enable_expert_parallel  # explicit still works


def test_enforce_with_models_reads_the_model_a_custom_container_names() -> None:
    named = _with_model(None, command=["vllm", "serve", "deepseek-ai/DeepSeek-V3", "-tp", "8"])
    assert mutate(copy.deepcopy(named), replace(ENFORCE, models=("deepseek-ai/*",))).patch != ()
    flagged = _with_model(None, command=["python", "-m", "vllm.entrypoints.openai.api_server",
                                         "--model=/mnt/models", "--served-model-name", "mixtral"])
    assert mutate(copy.deepcopy(flagged), MOE_ONLY).patch != ()
    custom = isvc(command=SERVE, enabled=None)
    container = custom["spec"]["predictor"].pop("model")
    container.pop("modelFormat")
    container.update(name="kserve-container", env=[{"name": "STORAGE_URI", "value": "hf://deepseek-ai/R1"}])
    custom["spec"]["predictor"]["containers"] = [container]
    assert mutate(copy.deepcopy(custom), MOE_ONLY).patch != ()
    container["env"] = [{"name": "STORAGE_URI", "value": "hf://google/gemma"}]
    assert mutate(copy.deepcopy(custom), MOE_ONLY).patch == ()


def test_an_object_enforced_earlier_whose_model_is_no_longer_covered_gets_its_command_back() -> None:
    obj = _with_model("hf://deepseek-ai/DeepSeek-V3")
    out, _ = run(obj, MOE_ONLY)
    model(out)["storageUri"] = "hf://meta-llama/Llama-3.1-70B"
    back, _ = run(out, MOE_ONLY)
    assert model(back)["command"] == SERVE


def test_policy_models_are_parsed_and_inherited_by_enforce_rules() -> None:
    policy = parse('defaults: {models: ["*DeepSeek*"]}\nrules: [{namespaces: [prod], mode: enforce}]\n')
    assert policy.options_for("prod", {}).models == ("*DeepSeek*",)
    assert policy.options_for("prod", {}).enforces(("hf://deepseek-ai/deepseek-v3",))  # any case


# -- runtime awareness ------------------------------------------------------------------------------


def runtime(command: list[str] | None, args: list[str] | None = None, image: str = "vllm/vllm-openai:v0.11.0") -> RuntimeSpec:
    return RuntimeSpec("ServingRuntime", "rt", image, tuple(command) if command else None, tuple(args) if args else None)


def no_command(name: str | None = "rt") -> dict[str, Any]:
    obj = isvc(args=["--max-model-len=4096"])
    if name:
        model(obj)["runtime"] = name
    return obj


@pytest.mark.parametrize(
    "spec",
    [
        runtime(["python3", "-m", "vllm.entrypoints.openai.api_server"], ["--port=8080", "--model=/mnt/models"]),
        runtime(["bash", "-c", 'exec vllm serve /mnt/models --port 8080 "$@"', "--"]),
        runtime(None),
    ],
)
def test_runtimes_that_pass_args_to_vllm_are_accepted(spec: RuntimeSpec) -> None:
    verdict = mutate(no_command(), runtimes=Runtimes((spec,)))
    assert verdict.allowed and verdict.patch


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (runtime(["bash", "-c", "exec vllm serve /mnt/models --port 8080"]), 'does not forward "$@"'),
        (runtime(["python", "-m", "sklearnserver"], ["--model_dir=/mnt/models"]), "does not take vLLM's data-parallel"),
        (runtime(["sh", "-c", "echo hi"]), "starts no vLLM server"),
    ],
)
def test_runtimes_that_drop_args_are_denied(spec: RuntimeSpec, needle: str) -> None:
    verdict = mutate(no_command(), runtimes=Runtimes((spec,)))
    assert not verdict.allowed and needle in verdict.message and "rt" in verdict.message


def test_an_unknown_runtime_keeps_todays_behaviour_with_a_warning() -> None:
    verdict = mutate(no_command("missing"), runtimes=Runtimes())
    assert verdict.allowed and verdict.patch
    assert any("'missing' is unknown" in w for w in verdict.warnings)


def test_an_image_entrypoint_runtime_that_is_not_vllm_warns() -> None:
    spec = runtime(None, image="example.com/custom-server:1")
    verdict = mutate(no_command(), runtimes=Runtimes((spec,)))
    assert verdict.allowed and any("entrypoint" in w for w in verdict.warnings)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import yaml  # noqa: E402

from webhook.core.policy import Policy  # noqa: E402

_scalars = st.none() | st.booleans() | st.integers(-3, 70) | st.sampled_from(
    ["optIn", "enforce", "forbid", "override", "reject", "prod-*", "nvidia.com/gpu", "In", "Exists", "pplx", ""])
_keys = st.sampled_from(["defaults", "rules", "mode", "allowOptOut", "onConflict", "tensorParallelSize",
                         "maxDataParallelSize", "gpuResources", "all2allBackends", "namespaces", "namespaceSelector",
                         "matchLabels", "matchExpressions", "key", "operator", "values", "name", "x"])
_docs = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(_keys, c, max_size=4), max_leaves=25)


@settings(max_examples=500, deadline=None)
@given(_docs)
def test_any_document_either_parses_or_fails_with_a_named_field(doc: Any) -> None:
    try:
        policy = parse(yaml.safe_dump(doc))
    except PolicyError as e:
        assert ":" in str(e)
    else:
        assert isinstance(policy, Policy)
        policy.options_for("prod-a", {"tier": "gpu"})


def test_verdicts_follow_options_runtimes_and_object_changes() -> None:
    obj = no_command()
    forwarding = runtime(["bash", "-c", 'exec vllm serve m "$@"'])
    dropping = runtime(["bash", "-c", "exec vllm serve m"])
    assert mutate(copy.deepcopy(obj), runtimes=Runtimes((forwarding,))).allowed
    assert not mutate(copy.deepcopy(obj), runtimes=Runtimes((dropping,))).allowed  # the runtime changed
    assert mutate(copy.deepcopy(obj), runtimes=Runtimes((forwarding,))).allowed
    assert not mutate(copy.deepcopy(obj), FORBID).allowed  # other options, other answer
    same = mutate(obj)
    model(obj)["resources"]["limits"]["nvidia.com/gpu"] = "4"  # the caller edits its dict afterwards
    assert mutate(obj).patch != same.patch


def test_the_policys_vllm_version_decides_what_is_written_when_the_image_does_not_say() -> None:
    policy = parse('defaults: {vllmVersion: "0.10.1.1"}\nrules: [{namespaces: [new], vllmVersion: "0.33.0"}]\n')
    asked = isvc(command=["vllm", "serve", "/mnt/models"], annotations={"ep.all2all-backend": "deepep_low_latency"})
    old = mutate(copy.deepcopy(asked), policy.options_for("llm", {}))
    assert old.allowed and "flags written for vLLM 0.10.1.1, from policy rule 'defaults'" in old.warnings
    assert any("VLLM_ALL2ALL_BACKEND=deepep_low_latency" in w for w in old.warnings)  # no flag on 0.10.1.1
    new = mutate(copy.deepcopy(asked), policy.options_for("new", {}))
    assert new.allowed and "flags written for vLLM 0.33.0, from policy rule 'rules[0]'" in new.warnings
    tagged = copy.deepcopy(asked)
    tagged["spec"]["predictor"]["model"]["image"] = "vllm/vllm-openai:v0.24.0"
    assert "flags written for vLLM 0.24.0, from the image tag" in mutate(tagged, policy.options_for("llm", {})).warnings


def test_unknown_launches_warn_relaxes_the_fail_closed_denial_per_rule() -> None:
    obj = isvc(command=["bash", "-c", "exec vllm serve /mnt/models $EXTRA_ARGS"], enabled=None)
    assert not mutate(copy.deepcopy(obj), FORBID).allowed
    relaxed = mutate(copy.deepcopy(obj), replace(FORBID, unknown_launches="warn"))
    assert relaxed.allowed and any("cannot be read" in w for w in relaxed.warnings)
    hidden = isvc(command=["vllm", "serve", "/mnt/models", "-ep", "-tp", "1", "-dp", "8", "$(VLLM_EXTRA)"], enabled=None)
    model(hidden)["env"] = [{"name": "VLLM_EXTRA", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]
    assert not mutate(copy.deepcopy(hidden), ENFORCE).allowed
    enforced = mutate(copy.deepcopy(hidden), replace(ENFORCE, unknown_launches="warn"))
    assert enforced.allowed and any("EP may not run" in w for w in enforced.warnings)
    with pytest.raises(PolicyError, match="unknownLaunches"):
        parse("defaults:\n  unknownLaunches: maybe\n")
