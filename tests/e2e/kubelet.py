"""What the kubelet does with a container before exec: `$(VAR)` expansion, then command + args.

No kubelet runs in the e2e cluster; the tests take the pod template of the Deployment that KServe
wrote and execute its container here, the way the kubelet and the container runtime would:

- env entries are expanded in order, each seeing the ones defined before it;
- `command` and `args` are expanded with the whole env (Kubernetes' expansion rules, the
  `third_party/forked/golang/expansion` package: `$(NAME)` is replaced when NAME is defined and left
  as is otherwise, `$$` is a literal `$`, any other `$` is kept);
- the process is `command + args` (an empty command would be the image's entrypoint, which the
  tests never rely on), started with exactly that environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.helpers import recorded_argv


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of one string."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 == n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":  # escaped operator
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:  # incomplete reference: kept, and scanning goes on after "$("
                out.append("$(")
                i += 2
                continue
            name = text[i + 2 : close]
            out.append(env[name] if name in env else f"$({name})")
            i = close + 1
        else:  # a "$" that does not start a reference: kept with the next character
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def container_env(container: Mapping[str, Any], field_values: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: plain values expanded in order, and `valueFrom.fieldRef` resolved
    from field_values (e.g. metadata.name); other sources (secrets, config maps) are not available
    here and stay unset, so references to them are left as `$(NAME)` as a kubelet would for a
    variable it does not know."""
    env: dict[str, str] = {}
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" in item:
            field = str((item["valueFrom"].get("fieldRef") or {}).get("fieldPath"))
            if field in field_values:
                env[name] = field_values[field]
            continue
        env[name] = expand(str(item.get("value", "")), env)
    return env


def container_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    return [expand(str(w), env) for w in [*(container.get("command") or []), *(container.get("args") or [])]]


def run_container(container: Mapping[str, Any], bin_dir: Path, workdir: Path,
                  field_values: Mapping[str, str] | None = None, injected: Mapping[str, str] | None = None) -> list[str]:
    """Execute the container's process with stand-ins first on PATH; return the argv vLLM got.

    `injected` is env another controller adds to the pod (LeaderWorkerSet's `LWS_*`), under the container's own.
    """
    env = {**(injected or {}), **container_env(container, field_values or {})}
    argv = container_argv(container, env)
    assert argv, f"container {container.get('name')} has no command or args: the image's entrypoint would run"
    return recorded_argv(argv, bin_dir, workdir, env)
