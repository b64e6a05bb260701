"""What vLLM will be started with: a launch read the way the kubelet, the shell and vLLM read it.

The one reader the policy decisions use (`forbid`, `enforce`, the audit): for
one launch it answers whether vLLM will run expert parallel — known on, known
off, or unknown — and, when it cannot know, which construct hides it, so that
a denial can say what to write literally instead. In order, as the pod starts:

1. the kubelet expands `$(VAR)` in command and args from the container's env
   (Kubernetes `expansion.MappingFuncFor`: `$$` is a literal `$`, an undefined
   name stays as written); a value from `valueFrom`, or a name that `envFrom`
   may define, is known only at run time;
2. KServe puts a runtime's args before the object's (and its command, when the
   object has none); an LLMInferenceService preset `eval`s `main`'s args and
   `${VLLM_ADDITIONAL_ARGS}` on its `vllm serve` line (KServe v0.20
   config/llmisvcconfig), so they are split and expanded by the shell again;
3. a `bash -c` script runs its vLLM line with the words the shell gives it;
   a script that defines `vllm` or `python` as a function or alias, or a word
   that expands at run time on that line, hides what vLLM gets;
4. vLLM folds dotted flags with their next word, reads unique prefixes, the
   last of `--enable-expert-parallel` / its negations wins (`argv.scan`), and
   `--config FILE` adds flags from a file the webhook cannot read.

Pure: reads values, never the network or files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from webhook.base.errors import NotApplicable
from webhook.core.gpus import watched_env
from webhook.core.workload import Launch
from webhook.vllm import argv, flags, launch as launches, shell
from webhook.vllm.argv import Arg

State = Literal["on", "off", "unknown"]

ADDITIONAL_ARGS_ENV = "VLLM_ADDITIONAL_ARGS"
"""The env KServe's LLMInferenceService presets put on the `vllm serve` line, unquoted (KServe v0.20,
config/llmisvcconfig/config-llm-template.yaml and the data-parallel presets)."""
_REDEFINED = re.compile(
    r"(?:^|[\s;&|(){}])(?:function\s+(vllm|python[0-9.]*)\b|(vllm|python[0-9.]*)\s*\(\s*\)|alias\s+(vllm|python[0-9.]*)=)"
)
_REFERENCE = re.compile(r"\$\$|\$\(([^)]*)\)")


class Reading(NamedTuple):
    """Whether vLLM runs expert parallel: `state`, and `why` (where it is switched on, or what hides it)."""

    state: State
    why: str = ""


OFF = Reading("off")


def container_env(container: Mapping[str, object] | None) -> tuple[dict[str, str | None], bool]:
    """Every env name of the container with its literal value (`gpus.watched_env`), and whether it has `envFrom`
    sources (which may define any other name)."""
    if container is None:
        return {}, False
    return watched_env(container, None), bool(container.get("envFrom"))


def kubelet_expand(item: str, env: Mapping[str, str | None], env_from: bool) -> tuple[str | None, str]:
    """`item` as the kubelet passes it on: `$(NAME)` replaced from `env`; (None, NAME) when a reference is known
    only at run time (from `valueFrom`, or from `envFrom` when `env` does not define it)."""
    if "$" not in item:
        return item, ""
    out: list[str] = []
    last = 0
    for m in _REFERENCE.finditer(item):
        out.append(item[last:m.start()])
        last = m.end()
        name = m.group(1)
        if name is None:
            out.append("$")
            continue
        if name in env:
            value = env[name]
            if value is None:
                return None, name
            out.append(value)
        elif env_from:
            return None, name
        else:
            out.append(m.group(0))
    out.append(item[last:])
    return "".join(out), ""


def _words_state(words: Sequence[Arg], where: str) -> Reading:
    """EP as vLLM reads these argv words: the last switch wins, and a word known only at run time counts as an
    unknown switch there (it may expand to either); `--config` matters only when no switch is on the command line
    (vLLM: the command line beats the file)."""
    occurrences = argv.scan(words)
    at = {o.flag_index: o for o in occurrences}
    consumed = {i for o in occurrences for i in o.indices}
    state = OFF
    switched = False
    config: Reading | None = None
    for k, w in enumerate(words):
        o = at.get(k)
        if o is not None:
            if o.name == flags.ENABLE_EP:
                state, switched = Reading("on", f"{where} sets {o.display}"), True
            elif o.name == flags.DISABLE_EP:
                state, switched = OFF, True
            continue
        if k in consumed:
            continue
        if w.opaque or w.literal is None:
            state, switched = Reading("unknown", f"{where} passes vLLM {shown(w)}, which expands at run time; "
                                                 f"write its flags literally"), True
        elif w.literal[:1] == "-" and flags.canonical(w.literal.partition("=")[0]) == "--config":
            config = Reading("unknown", f"{where} passes vLLM --config, whose file may switch EP on; write the "
                                        f"flags on the command line")
    if not switched and config is not None:
        return config
    return state


def shown(word: Arg) -> str:
    """A word as messages show it."""
    text = word.text or word.literal or word.prefix + "…"
    return f"`{text[:40]}`"


def _eval_words(items: Sequence[str], where: str) -> list[Arg] | Reading:
    """Items joined and split again by the shell's `eval`, as argv words (opaque where they expand)."""
    text = " ".join(items)
    try:
        commands = shell.parse(text + " :")
    except shell.ShellSyntaxError as e:
        return Reading("unknown", f"{where} cannot be read as the preset's eval reads it ({e})")
    words = [w for c in commands for w in c.words]
    if not words or words[-1].literal != ":" or len(commands) != 1:
        return Reading("unknown", f"{where}: the preset's eval reads a `#` comment, `;` or `&` in it, which hides "
                                  f"the words after it; quote or remove it")
    return [Arg(w.literal, w.prefix, w.text) for w in words[:-1]]


def read(launch: Launch, command: Sequence[str] | None, args: Sequence[str] | None,
         may_be_vllm: bool = True) -> Reading:
    """Whether the container of `launch`, with these command and args, runs vLLM with expert parallel.

    `may_be_vllm` False: a container that is not the one KServe serves from, whose unrecognised command is
    taken as not vLLM (a sidecar); True: an unrecognised launch is unknown.
    """
    env, env_from = container_env(launch.container)
    where = launch.where
    base = list(command or launch.runtime_command or ())
    items_in = [*base, *launch.runtime_args, *(args or ())]
    items: list[str] = []
    for item in items_in:
        value, name = kubelet_expand(item, env, env_from)
        if value is None:
            return Reading("unknown", f"{where} has {item[:40]!r}, which Kubernetes expands from env {name}, "
                                      f"set only at run time; write the flags in command/args or give {name} a "
                                      f"literal value")
        items.append(value)
    if not base:
        if launch.form == "eval":
            extra = env.get(ADDITIONAL_ARGS_ENV, "")
            if extra is None or (env_from and ADDITIONAL_ARGS_ENV not in env):
                return Reading("unknown", f"{where}: env {ADDITIONAL_ARGS_ENV}, on the preset's vllm serve line, is "
                                          f"set only at run time")
            evaluated = _eval_words([*items, extra], f"{where}.args")
            return evaluated if isinstance(evaluated, Reading) else _words_state(evaluated, f"{where}.args")
        return _words_state([Arg.item(v) for v in items], f"{where}.args")
    try:
        found = launches.read(items)
    except NotApplicable as e:
        return Reading("unknown", e.message)
    if isinstance(found, launches.ListLaunch):
        if found.call is None:
            return Reading("unknown", f"{where} runs {launches.describe(found.words)}, which the webhook cannot "
                                      f"read") if may_be_vllm else OFF
        return _words_state(found.words[found.call.start:], f"{where}.command")
    script = items[found.script_index]
    if found.commands is None:
        return Reading("unknown", f"{where}: its script cannot be read ({found.error})")
    redefined = _REDEFINED.search(script)
    if redefined:
        name = next(g for g in redefined.groups() if g)
        return Reading("unknown", f"{where}: its script redefines {name}, so what runs as vLLM is unknown; call "
                                  f"vLLM directly")
    if not found.calls:
        return Reading("unknown", f"{where}: its script starts no recognisable vLLM") if may_be_vllm else OFF
    forwarded = [Arg.item(v) for v in items[found.script_index + 2:]]
    state: Reading = OFF
    for cmd, call in found.calls:
        line_words: list[Arg] = []
        for w in cmd.words[call.start:]:
            if w.all_positional:
                line_words.extend(forwarded)
            else:
                line_words.append(Arg(w.literal, w.prefix, w.text))
        line = _words_state(line_words, f"{where}'s script")
        if line.state != "off":
            return line
    return state
