"""`ep-webhook mutate` as a user runs it: the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonpatch
import pytest
import yaml

from tests.helpers import EXAMPLES, ROOT, isvc
from tests.vllm_grammar import parse_launch

EXE = shutil.which("ep-webhook", path=str(Path(sys.executable).parent))


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [EXE] if EXE else [sys.executable, "-m", "webhook"]
    return subprocess.run([*cmd, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_the_console_script_is_installed() -> None:
    assert EXE is not None, "pip install . must provide the ep-webhook command"


def test_mutate_prints_the_resulting_yaml_with_warnings_on_stderr() -> None:
    done = cli("mutate", "-f", str(EXAMPLES / "vllm-serve-list.yaml"))
    assert done.returncode == 0, done.stderr
    out = yaml.safe_load(done.stdout)
    ns = parse_launch(out["spec"]["predictor"]["model"]["command"])
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.enable_expert_parallel) == (2, 4, True)
    assert "warning: InferenceService default/deepseek-v3: replaced --tensor-parallel-size 8 with 2" in done.stderr


def test_mutate_json_output_and_stdin() -> None:
    obj = isvc(command=["vllm", "serve", "m"])
    done = cli("mutate", "-f", "-", "-o", "json", stdin=json.dumps(obj))
    assert done.returncode == 0
    out = json.loads(done.stdout)
    assert parse_launch(out["spec"]["predictor"]["model"]["command"]).data_parallel_size == 8


def test_mutate_patch_output_applies_to_the_input() -> None:
    src = EXAMPLES / "alauda-bash-gpu-count.yaml"
    done = cli("mutate", "-f", str(src), "-o", "patch")
    assert done.returncode == 0
    [labelled] = json.loads(done.stdout)
    source = yaml.safe_load(src.read_text())
    assert (labelled["kind"], labelled["name"]) == ("InferenceService", source["metadata"]["name"])
    result = jsonpatch.apply_patch(source, labelled["patch"])
    assert "--data-parallel-size 4" in result["spec"]["predictor"]["model"]["command"][2]


def test_yaml_output_keeps_scripts_as_readable_blocks() -> None:
    done = cli("mutate", "-f", str(EXAMPLES / "alauda-bash-gpu-count.yaml"))
    assert "- |\n" in done.stdout and "  --data-parallel-size 4\n" in done.stdout


def test_a_denial_exits_1_with_the_reason() -> None:
    obj = isvc(command=["vllm", "serve", "m"], limits={"nvidia.com/gpu": "1"})
    done = cli("mutate", "-f", "-", stdin=yaml.safe_dump(obj))
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.startswith("InferenceService llm/qwen3: ") and "at least 2 GPUs" in done.stderr


def test_reject_on_conflict_is_available_offline() -> None:
    done = cli("mutate", "--on-conflict", "reject", "-f", str(EXAMPLES / "vllm-serve-list.yaml"))
    assert done.returncode == 1 and "--tensor-parallel-size 8" in done.stderr


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["mutate", "-f", "/nonexistent.yaml"], None),
        (["mutate", "-f", "-"], "a: [unclosed"),
        (["mutate", "-f", "-"], "a: 1\n---\nb: 2\n"),
        (["mutate", "-f", "-"], ""),
        (["mutate"], None),
        (["mutate", "-f", "-", "-o", "xml"], "{}"),
        (["frobnicate"], None),
        (["audit", "--vllm-version", "latest"], None),
        (["serve", "--cert-dir", "/nonexistent", "--audit-vllm-version", "0.33"], None),
    ],
)
def test_usage_errors_and_unreadable_input_exit_2(args: list[str], stdin: str | None) -> None:
    done = cli(*args, stdin=stdin)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr


def test_the_upgrade_audit_names_a_release_it_cannot_read() -> None:
    done = cli("audit", "--vllm-version", "0.33")
    assert done.returncode == 2 and "'0.33' is not a vLLM release number like 0.24.0" in done.stderr


def test_python_dash_m_webhook_is_the_same_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "mutate", "-f", str(EXAMPLES / "runtime-args-only.yaml"), "-o", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0
    args = json.loads(done.stdout)["spec"]["predictor"]["model"]["args"]
    # modelFormat huggingface: KServe's shipped kserve-huggingfaceserver, which sets TP to the GPU count itself
    assert args == [
        "--max-model-len=8192", "--trust-remote-code", "--enable-expert-parallel",
        "--enable-eplb", "--eplb-config", '{"window_size":1000,"step_interval":3000}',
    ]
    assert "resolved against KServe v0.20.0's shipped LLM runtimes" in done.stderr


POLICY = """
defaults: {mode: optIn}
rules:
  - namespaces: ["prod-*"]
    mode: enforce
    allowOptOut: false
  - namespaceSelector: {matchLabels: {ep.policy: forbid}}
    mode: forbid
"""


def test_policy_check_accepts_a_valid_file_and_names_the_bad_field_otherwise(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(POLICY)
    done = cli("policy", "check", str(good))
    assert done.returncode == 0 and "2 rule(s)" in done.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(POLICY.replace("mode: forbid", "mode: forbidden"))
    done = cli("policy", "check", str(bad))
    assert done.returncode == 1 and "rules[1].mode" in done.stderr
    assert cli("policy", "check", str(tmp_path / "missing.yaml")).returncode == 1


def test_mutate_applies_the_policy_of_the_objects_namespace(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    plain = isvc(command=["vllm", "serve", "m"], enabled=None)
    plain["metadata"]["namespace"] = "prod-eu"
    done = cli("mutate", "--policy", str(policy), "-f", "-", "-o", "json", stdin=json.dumps(plain))
    assert done.returncode == 0
    assert parse_launch(json.loads(done.stdout)["spec"]["predictor"]["model"]["command"]).enable_expert_parallel
    annotated = isvc(command=["vllm", "serve", "m"])
    annotated["metadata"]["namespace"] = "team-x"
    done = cli("mutate", "--policy", str(policy), "--namespace-labels", "ep.policy=forbid,team=x", "-f", "-",
               stdin=json.dumps(annotated))
    assert done.returncode == 1 and "forbidden" in done.stderr
    assert cli("mutate", "--policy", str(policy), "--namespace-labels", "oops", "-f", "-",
               stdin=json.dumps(annotated)).returncode == 2
