"""Does a ServingRuntime pass the InferenceService's args on to vLLM?

With no command on the InferenceService, KServe runs the runtime's command and
appends the InferenceService's args after the runtime's own. The webhook's
flags then reach vLLM only if that command is a vLLM launch, or a shell
script whose vLLM line forwards `"$@"`. This module judges a runtime's
container from data alone; fetching and caching runtimes is the server's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook import launch, shell
from webhook.errors import NotApplicable


@dataclass(frozen=True)
class RuntimeSpec:
    """The parts of a (Cluster)ServingRuntime's kserve-container that matter here."""

    kind: str  # ServingRuntime | ClusterServingRuntime
    name: str
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None


def spec_from_object(kind: str, obj: object) -> RuntimeSpec | None:
    """Read a runtime object (as the API returns it); None if it has no usable container."""
    if not isinstance(obj, dict):
        return None
    meta, spec = obj.get("metadata"), obj.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        return None
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return None
    chosen = next((c for c in containers if isinstance(c, dict) and c.get("name") == "kserve-container"), containers[0])
    if not isinstance(chosen, dict):
        return None

    def strings(v: object) -> tuple[str, ...] | None:
        return tuple(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else None

    return RuntimeSpec(kind, str(meta.get("name", "")), str(chosen.get("image", "")),
                       strings(chosen.get("command")), strings(chosen.get("args")))


def check(runtime: RuntimeSpec) -> str | None:
    """Raise NotApplicable when args cannot reach vLLM; return a warning when unsure."""
    label = f"{runtime.kind} {runtime.name}"
    if not runtime.command:
        if "vllm" in runtime.image.lower():
            return None
        return f"{label} uses its image's entrypoint; assuming it starts vLLM"
    full = list(runtime.command) + list(runtime.args or ())
    words = [launch.Word(v, v) for v in full]
    call = launch.shell_call(words)
    if call is None:
        if launch.vllm_args_start(words) is not None:
            return None
        raise NotApplicable(
            f"the InferenceService has no command, so it runs {label}'s {launch.describe(words)}, which does not "
            f"take vLLM's data-parallel flags; set spec.predictor.model.command to a vLLM launch or use a vLLM runtime"
        )
    try:
        commands = shell.parse(full[call.script_index])
    except shell.ShellSyntaxError:
        return f"{label}'s script could not be read; assuming it forwards its arguments to vLLM"
    launches = [c for c in commands if not c.compound and launch.vllm_args_start([launch.Word(w.literal, w.prefix) for w in c.words]) is not None]
    if not launches:
        raise NotApplicable(
            f"the InferenceService has no command, so it runs {label}'s script, which starts no vLLM server; "
            f"set spec.predictor.model.command to a vLLM launch"
        )
    if not any(w.all_positional for c in launches for w in c.words):
        raise NotApplicable(
            f"the InferenceService has no command and {label}'s script does not forward \"$@\" to vLLM, so flags "
            f"in args would never reach it; set spec.predictor.model.command, or add \"$@\" to the runtime's vLLM line"
        )
    return None
