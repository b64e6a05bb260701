"""Rule 3: vLLM launches inside `sh -c` scripts, checked by running bash.

The mutated commands are executed for real with bash, with stand-ins for
`vllm`, `python3` and `nvidia-smi` on PATH that record the argv they get;
that argv is then parsed with the vLLM grammar model. This checks what the
shell really passes to vLLM, not what the script text looks like.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kubelet import container_argv, container_env
from tests.helpers import isvc, json_after, load_example, model, recorded_argv, run, stand_in_bin
from tests.vllm_grammar import parse_launch
from webhook.vllm import shell
from webhook.admission.kinds import mutate

BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture()
def fake_bin(tmp_path: Path) -> Path:
    return stand_in_bin(tmp_path / "bin")


def execute(obj: dict[str, Any], fake_bin: Path, tmp_path: Path) -> list[str]:
    """Run the container's command + args as the kubelet would (its `$(VAR)` expansion, then exec, bash);
    return vLLM's argv."""
    m = model(obj)
    return recorded_argv(container_argv(m, container_env(m, {})), fake_bin, tmp_path)


def test_alauda_script_computing_gpu_count_runs_vllm_in_ep_mode(fake_bin: Path, tmp_path: Path) -> None:
    obj = load_example("alauda-bash-gpu-count.yaml")
    before = execute(obj, fake_bin, tmp_path)
    assert parse_launch(before).tensor_parallel_size == 8  # the script's own GPU_COUNT
    out, verdict = run(obj)
    ns = parse_launch(execute(out, fake_bin, tmp_path))
    assert (ns.enable_expert_parallel, ns.tensor_parallel_size, ns.data_parallel_size) == (True, 1, 4)
    assert "replaced --tensor-parallel-size ${GPU_COUNT} with 1" in verdict.warnings
    assert model(out)["command"][3] == "bash"  # $0 stays where it was, nothing appended after the script


def test_only_the_vllm_words_of_the_script_change(fake_bin: Path) -> None:
    obj = load_example("alauda-bash-gpu-count.yaml")
    out, _ = run(obj)
    old, new = model(obj)["command"][2], model(out)["command"][2]
    cut = old.index("--tensor-parallel-size ${GPU_COUNT}")
    assert new[:cut] == old[:cut]  # comments, templates, variables, indentation: same bytes
    assert new[cut:] == (
        "--tensor-parallel-size 1 \\\n"
        "  --enable-expert-parallel \\\n"
        "  --data-parallel-size 4\n"
    )


FOLDED = """
command: ["/bin/sh", "-c"]
args:
  - >
    exec vllm serve /mnt/models
    --port 8080
    --tensor-parallel-size 4
    --max-model-len 4096
"""


def test_folded_yaml_script_in_args_is_edited(fake_bin: Path, tmp_path: Path) -> None:
    obj = isvc()
    model(obj).update(yaml.safe_load(FOLDED))
    out, _ = run(obj)
    assert model(out)["command"] == ["/bin/sh", "-c"]
    assert model(out)["args"] == [
        "exec vllm serve /mnt/models --port 8080 --tensor-parallel-size 1 --max-model-len 4096"
        " --enable-expert-parallel --data-parallel-size 8\n"
    ]
    ns = parse_launch(execute(out, fake_bin, tmp_path))
    assert (ns.tensor_parallel_size, ns.data_parallel_size, ns.max_model_len) == (1, 8, 4096)


def test_flags_forwarded_with_dollar_at_are_fixed_and_ours_come_last(fake_bin: Path, tmp_path: Path) -> None:
    obj = isvc(
        command=["bash", "-c", 'exec vllm serve "$@"', "launcher"],
        args=["/mnt/models", "--tensor-parallel-size", "8", "--port", "8080"],
    )
    out, _ = run(obj)
    m = model(out)
    assert m["command"][2] == 'exec vllm serve "$@" --enable-expert-parallel --tensor-parallel-size 1 --data-parallel-size 8'
    assert m["args"] == ["/mnt/models", "--port", "8080"]
    ns = parse_launch(execute(out, fake_bin, tmp_path))
    assert (ns.model_tag, ns.port, ns.tensor_parallel_size, ns.data_parallel_size) == ("/mnt/models", 8080, 1, 8)


def test_flags_after_a_script_without_dollar_at_are_left_alone_with_a_warning(fake_bin: Path, tmp_path: Path) -> None:
    obj = isvc(command=["bash", "-c", "vllm serve /mnt/models", "--tensor-parallel-size", "8"])
    out, verdict = run(obj)
    m = model(out)
    assert m["command"][3:] == ["--tensor-parallel-size", "8"]
    assert any("never reaches vLLM" in w for w in verdict.warnings)
    ns = parse_launch(execute(out, fake_bin, tmp_path))
    assert (ns.tensor_parallel_size, ns.data_parallel_size) == (1, 8)


def test_every_vllm_launch_in_branches_is_edited(fake_bin: Path, tmp_path: Path) -> None:
    script = (
        "if [ -n \"$DEBUG\" ]; then\n"
        "  vllm serve /mnt/models --enforce-eager -tp $N\n"
        "else\n"
        "  exec vllm serve /mnt/models -tp=$N\n"
        "fi\n"
    )
    out, _ = run(isvc(command=["bash", "-c", script]))
    new = model(out)["command"][2]
    assert "-tp 1 --enable-expert-parallel --data-parallel-size 8\n" in new
    assert "-tp=1 --enable-expert-parallel --data-parallel-size 8\n" in new
    ns = parse_launch(execute(out, fake_bin, tmp_path))
    assert (ns.tensor_parallel_size, ns.data_parallel_size) == (1, 8)


def test_env_and_assignment_prefixes_in_scripts_are_recognised(fake_bin: Path, tmp_path: Path) -> None:
    script = "VLLM_LOGGING_LEVEL=DEBUG env HF_HOME=/tmp exec_wrapper=1 python3 -m vllm.entrypoints.cli.main serve m"
    out, _ = run(isvc(command=["bash", "-ec", script]))
    ns = parse_launch(execute(out, fake_bin, tmp_path))
    assert (ns.enable_expert_parallel, ns.data_parallel_size) == (True, 8)


def test_values_written_into_scripts_are_shell_quoted_and_never_run(fake_bin: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    # a key vLLM 0.15.1 passes over: every value vLLM 0.16+ reads is a number, a bool or one of a few words
    hostile = {"note": f"'; touch {canary}; echo '$(touch {canary})`touch {canary}`\n&& x"}
    ann = {"ep.eplb-config": json.dumps(hostile), "ep.eplb": "true", "ep.vllm-version": "0.15.1"}
    out, _ = run(isvc(command=["bash", "-c", "vllm serve m"], annotations=ann))
    argv = execute(out, fake_bin, tmp_path)
    assert parse_launch(argv, release="0.15.1").enable_eplb  # 0.15.1 starts it, ignoring the key
    assert json_after(argv, "--eplb-config") == hostile
    assert not canary.exists()


def test_script_without_vllm_is_denied_listing_what_it_runs() -> None:
    verdict = mutate(isvc(command=["bash", "-c", "echo hi\nexec /opt/server --port 8080"]))
    assert not verdict.allowed
    assert "`echo hi`" in verdict.message and "/opt/server" in verdict.message and "vllm serve" in verdict.message


@pytest.mark.parametrize(
    "script",
    ["vllm serve 'm", 'vllm serve "$(echo', "vllm serve m <<EOF\nbody without end"],
)
def test_scripts_that_cannot_be_parsed_are_denied(script: str) -> None:
    verdict = mutate(isvc(command=["bash", "-c", script]))
    assert not verdict.allowed and "cannot be edited safely" in verdict.message


def test_vllm_inside_command_substitution_is_not_taken_as_a_launch() -> None:
    verdict = mutate(isvc(command=["bash", "-c", "OUT=$(vllm serve m --tensor-parallel-size 8)"]))
    assert not verdict.allowed


def test_redirections_and_pipes_keep_the_flags_on_the_vllm_command(fake_bin: Path, tmp_path: Path) -> None:
    script = "vllm serve m --port 8080 2>&1 > /dev/null | cat\necho done"
    out, _ = run(isvc(command=["bash", "-c", script]))
    assert model(out)["command"][2].startswith(
        "vllm serve m --port 8080 --enable-expert-parallel --tensor-parallel-size 1 --data-parallel-size 8 2>&1"
    )
    ns = parse_launch(execute(out, fake_bin, tmp_path))
    assert ns.data_parallel_size == 8


def test_heredoc_bodies_are_not_mistaken_for_commands() -> None:
    script = "cat > /tmp/cfg <<EOF\nvllm serve fake --tensor-parallel-size 8\nEOF\nvllm serve m"
    out, _ = run(isvc(command=["bash", "-c", script]))
    new = model(out)["command"][2]
    assert new.startswith("cat > /tmp/cfg <<EOF\nvllm serve fake --tensor-parallel-size 8\nEOF\n")
    assert new.endswith("vllm serve m --enable-expert-parallel --tensor-parallel-size 1 --data-parallel-size 8")


# -- the lexer itself ------------------------------------------------------------------------


def words(script: str) -> list[list[tuple[str, str | None]]]:
    return [[(w.text, w.literal) for w in c.words] for c in shell.parse(script)]


def test_lexer_splits_commands_and_removes_quotes() -> None:
    assert words("a 'b c' \"d\"e\\ f; g && h | i\n# comment\nj # tail") == [
        [("a", "a"), ("'b c'", "b c"), ('"d"e\\ f', "de f")],
        [("g", "g")],
        [("h", "h")],
        [("i", "i")],
        [("j", "j")],
    ]


def test_lexer_marks_expansions_dynamic_and_keeps_the_static_prefix() -> None:
    [cmd] = shell.parse('x --tp=${N:-1} "$@" $(a "b)") `c` {{.Name}}')
    assert [(w.literal, w.prefix, w.all_positional) for w in cmd.words] == [
        ("x", "x", False),
        (None, "--tp=", False),
        (None, "", True),
        (None, "", False),
        (None, "", False),
        ("{{.Name}}", "{{.Name}}", False),
    ]


def test_lexer_drops_redirections_and_line_continuations() -> None:
    assert words("a \\\n  b 2>/dev/null >> log c") == [[("a", "a"), ("b", "b"), ("c", "c")]]


def test_quote_leaves_plain_words_alone_and_protects_the_rest() -> None:
    assert shell.quote("--data-parallel-size") == "--data-parallel-size"
    assert shell.quote('{"a": 1}') == "'{\"a\": 1}'"
    completed = subprocess.run(
        [BASH, "-c", "printf %s " + shell.quote("it's $(x) `y`")], capture_output=True, text=True, check=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert completed.stdout == "it's $(x) `y`"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE = st.lists(st.sampled_from([
    "'", '"', "$(touch CANARY)", "`touch CANARY`", "; touch CANARY", "&& touch CANARY", "\n", "\\", "$HOME",
    "${PATH}", "|", ">", "<", "*", "?", "ü", "字", "\t", "!", "#", "~", "{{.Name}}", " ",
]), min_size=1, max_size=8).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(HOSTILE, HOSTILE)
def test_hostile_annotation_values_never_run_as_code(fake_bin: Path, tmp_path: Path, key: str, value: str) -> None:
    canary = tmp_path / "CANARY"
    canary.unlink(missing_ok=True)
    config = {key.replace("CANARY", str(canary)): value.replace("CANARY", str(canary))}
    hostile_tp = value.replace("CANARY", str(canary))
    # values the webhook would write into the script are validated or quoted
    assert not mutate(isvc(command=["bash", "-c", "vllm serve m"], annotations={"ep.tensor-parallel-size": hostile_tp})).allowed
    assert not mutate(isvc(command=["bash", "-c", "vllm serve m"], annotations={"ep.all2all-backend": hostile_tp})).allowed
    # hostile keys too: vLLM 0.15.1 passes unknown --eplb-config keys over (0.16 refuses them, and so does the webhook)
    out, verdict = run(isvc(command=["bash", "-c", "cd /\nexec vllm serve m \\\n  --port 8080"],
                            annotations={"ep.eplb-config": json.dumps(config), "ep.vllm-version": "0.15.1"}))
    assert verdict.allowed
    argv = execute(out, fake_bin, tmp_path)
    assert parse_launch(argv, release="0.15.1").enable_expert_parallel  # 0.15.1 starts it, ignoring the key
    assert json_after(argv, "--eplb-config") == config
    assert not canary.exists()
