"""KServe's LLMInferenceService presets, rendered and run the way a pod would run them.

The presets come from ../shared/kserve/llmisvcconfig/ (KServe's own files,
never copied here). KServe picks one per role (single node, prefill/decode,
multi-node data parallel: `config_merge.go`), merges it with the object by
container name (the object's `main` args replace the preset's; its command,
if any, replaces the preset's), and renders the Go templates with the merged
object. This module does the same for the template fields the presets use:
field paths, `if`/`else`/`end`, `and`, `or`, and KServe's `shutdownTimeout`,
`kvTransferConfig` and `ChildName` helpers, with Go's `{{-`/`-}}` trimming.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.kubelet import container_env, expand
from tests.helpers import SHARED

PRESETS = SHARED / "kserve" / "llmisvcconfig"
_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
# Go field names whose JSON names are not the name with a lower-case first letter
_JSON_NAMES = {"KVCacheOffloading": "kvCacheOffloading", "ObjectMeta": "metadata", "DataRPCPort": "dataRPCPort"}


def preset(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def preset_names(obj: dict[str, Any], role: str) -> str:
    """The preset KServe merges for a role ("decode" or "prefill"; "decode" means the object itself)."""
    spec = obj["spec"]
    body = spec.get("prefill") if role == "prefill" else spec
    assert isinstance(body, dict)
    worker = body.get("worker") is not None
    split = "prefill" in spec
    kind = "prefill-" if role == "prefill" else ("decode-" if split else "")
    return f"config-llm-{kind}worker-data-parallel" if worker else f"config-llm-{kind}template"


def _lookup(path: str, data: dict[str, Any]) -> Any:
    value: Any = data
    for part in path.strip(".").split("."):
        if not part:
            continue
        key = _JSON_NAMES.get(part, part[:1].lower() + part[1:])
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {})


def _tokens(expr: str) -> list[str]:
    return re.findall(r"`[^`]*`|\"[^\"]*\"|\S+", expr)


def _value(token: str, data: dict[str, Any]) -> Any:
    if token.startswith("."):
        return _lookup(token, data)
    if token[0] in "`\"":
        return token[1:-1]
    if token == "nil":
        return None
    if token.isdigit():
        return int(token)
    raise ValueError(f"unsupported template token {token!r}")


def _evaluate(expr: str, data: dict[str, Any]) -> Any:
    tokens = _tokens(expr)
    head, rest = tokens[0], [_value(t, data) for t in tokens[1:]]
    if head == "and":
        result: Any = True
        for v in rest:
            result = v
            if not _truthy(v):
                return v
        return result
    if head == "or":
        for v in rest:
            if _truthy(v):
                return v
        return rest[-1]
    if head == "shutdownTimeout":
        # max(0, tgps - preStop - min(5, tgps)), tgps defaulting to 60
        pod, pre_stop = rest
        tgps = pod.get("terminationGracePeriodSeconds") if isinstance(pod, dict) else None
        tgps = tgps if isinstance(tgps, int) else 60
        return max(0, tgps - pre_stop - min(5, tgps))
    if head == "kvTransferConfig":
        assert rest[0] is None, "kvCacheOffloading is not modelled"
        return ""
    if head == "ChildName":
        return f"{rest[0]}{rest[1]}"
    assert not rest, f"unsupported template expression {expr!r}"
    return _value(head, data)


def _show(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def render(text: str, data: dict[str, Any]) -> str:
    """Render Go template text with `data` (the merged object as JSON)."""
    pieces: list[tuple[str, str]] = []  # ("text", s) or ("action", expr)
    pos = 0
    for m in _ACTION.finditer(text):
        before = text[pos:m.start()]
        if m.group(1):
            before = before.rstrip(" \t\r\n")
        pieces.append(("text", before))
        pieces.append(("action", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    pieces.append(("text", text[pos:]))
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (parent emitting, this branch taken)

    def emitting() -> bool:
        return all(parent and taken for parent, taken in stack)

    for kind, body in pieces:
        if kind == "text":
            if emitting():
                out.append(body)
            continue
        if body.startswith("if "):
            parent = emitting()
            stack.append((parent, parent and _truthy(_evaluate(body[3:], data))))
        elif body == "else":
            parent, taken = stack.pop()
            stack.append((parent, parent and not taken))
        elif body == "end":
            stack.pop()
        elif body.startswith("/*"):
            continue
        elif emitting():
            out.append(_show(_evaluate(body, data)))
    assert not stack, "unbalanced template"
    return "".join(out)


def _main(pod: dict[str, Any] | None) -> dict[str, Any]:
    for c in (pod or {}).get("containers", []):
        if c.get("name") == "main":
            assert isinstance(c, dict)
            return c
    return {}


def container_argv(obj: dict[str, Any], role: str, worker: bool = False) -> list[str]:
    """The `main` container's argv after KServe's merge and rendering, and the kubelet's `$(VAR)` expansion
    (with the container's own env values; `$$` becomes `$`), as the container's process gets it."""
    spec = obj["spec"]
    body = spec["prefill"] if role == "prefill" else spec
    pod_key = "worker" if worker else "template"
    data = {"spec": spec, "metadata": obj["metadata"], "globalConfig": {"enableTLS": False}}
    rendered = json.loads(render(json.dumps(preset(preset_names(obj, role))), data))
    preset_main = _main(_preset_pod(rendered, role, pod_key))
    own = _main(body.get(pod_key))
    command = own.get("command") or preset_main["command"]
    args = own.get("args") if "args" in own else preset_main.get("args", [])
    env = container_env({"env": [*(preset_main.get("env") or []), *(own.get("env") or [])]}, {})
    return [expand(str(w), env) for w in [*command, *(args or [])]]


def _preset_pod(chosen: dict[str, Any], role: str, pod_key: str) -> dict[str, Any]:
    spec = chosen["spec"]
    if role == "prefill":
        spec = spec["prefill"]
    pod = spec[pod_key]
    assert isinstance(pod, dict)
    return pod


STAND_IN = """#!/bin/bash
name=$(basename "$0")
if [ "$name" = vllm ] && [ "$1" = --version ]; then echo 0.33.0; exit 0; fi
if [ "$name" = getent ]; then echo "10.1.2.3 $2"; exit 0; fi
{ printf '%s\\0' "$name"; printf '%s\\0' "$@"; } > "$ARGV_OUT"
"""


def stand_ins(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for name in ("vllm", "getent"):
        p = folder / name
        p.write_text(STAND_IN)
        p.chmod(0o755)
    return folder


def run(argv: list[str], folder: Path, env: dict[str, str] | None = None) -> list[str]:
    """Run the container's argv with bash and the stand-ins; return the argv vLLM was started with."""
    bin_dir = stand_ins(folder / "bin")
    out = folder / "argv"
    out.unlink(missing_ok=True)
    full_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ARGV_OUT": str(out), "HOME": str(folder),
                "LWS_LEADER_ADDRESS": "leader.example", **(env or {})}
    subprocess.run(argv, env=full_env, cwd=folder, check=True, timeout=30, capture_output=True)
    return out.read_bytes().decode().split("\0")[:-1]
