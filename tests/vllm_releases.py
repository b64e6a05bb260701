"""Real vLLM releases as the judge of a command: what each release parses from an argv, and whether its
ParallelConfig accepts the result (its start-up checks).

`releases()` builds or finds the cached venvs (scripts/vllm_envs.py, the first run takes about a minute per
release); `Judge` keeps one `tests/vllm_judge.py` process per release and asks it over JSON lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RELEASES = ("0.10.1.1", "0.11.0", "0.11.2", "0.15.1", "0.24.0", "0.33.0")
"""The releases the suite judges with (scripts/vllm_envs.py builds the same list)."""
NEWEST = RELEASES[-1]


def version(text: str) -> tuple[int, ...]:
    """`0.11.2` as (0, 11, 2), for comparing releases."""
    return tuple(int(part) for part in text.split("."))


def releases() -> dict[str, Path]:
    """Every release's venv python, building the venvs that are not cached yet; fails with the build's message."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "vllm_envs.py"), *RELEASES],
                            capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/vllm_envs.py failed:\n{result.stderr[-3000:]}")
    found = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.strip())
    return {v: Path(p) for v, p in found.items()}


@dataclass
class Verdict:
    """One release's answer: `ok` with the parsed namespace and the ParallelConfig fields, or the stage
    (`parse`, `config`) and vLLM's own error message."""

    ok: bool
    parsed: dict[str, Any] = field(default_factory=dict)
    parallel: dict[str, Any] = field(default_factory=dict)
    envs: dict[str, Any] = field(default_factory=dict)
    """`VLLM_*` variables as the release's `vllm.envs` reads them (tests/vllm_judge.py `ENVS_READ`)."""
    stage: str = ""
    error: str = ""


class Judge:
    """One release's judge process, started on first use."""

    def __init__(self, release: str, python: Path) -> None:
        self.release = release
        self.python = python
        self.proc: subprocess.Popen[str] | None = None

    def judge(self, argv: list[str], gpus: int, env: dict[str, str] | None = None,
              entry: str = "serve", known: bool = False) -> Verdict:
        """What this release makes of `argv` (the words after `vllm serve`) on a pod with `gpus` GPUs; `known`:
        parsed with `parse_known_args` (see tests/vllm_judge.py)."""
        return Verdict(**self._ask({"argv": argv, "gpus": gpus, "env": env or {}, "entry": entry, "known": known}))

    def facts(self) -> dict[str, Any]:
        """What this release's `vllm serve` accepts: `options` (every option string), `all2all` (the
        backend choices, None before the flag) and `eplb_keys` (None before EPLBConfig)."""
        return self._ask({"facts": True})

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.proc is None:
            self.proc = subprocess.Popen([str(self.python), str(ROOT / "tests" / "vllm_judge.py")],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True, bufsize=1)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the vLLM {self.release} judge exited")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("stage") == "judge":
            raise RuntimeError(f"the vLLM {self.release} judge failed:\n{answer['error']}")
        return answer

    def close(self) -> None:
        """Stop the process."""
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=60)
            self.proc = None


def serve_argv(command: list[str]) -> list[str]:
    """The words after `vllm serve` in a list command (the test's own objects always start so)."""
    for i in range(len(command) - 1):
        if command[i].rsplit("/", 1)[-1] == "vllm" and command[i + 1] == "serve":
            return command[i + 2:]
    raise ValueError(f"not a `vllm serve` command: {command[:3]}")
