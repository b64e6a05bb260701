"""What a ServingRuntime starts, and whether the InferenceService's args reach it.

With no command on the InferenceService, KServe runs the runtime's command and
appends the InferenceService's args after the runtime's own. The webhook's
flags then reach the server only if that command is a launch it recognises, or
a shell script whose launch line forwards `"$@"`. This module judges a
runtime's container from data alone; fetching and caching runtimes is the
server's job, choosing one is `selection`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.vllm import launch
from webhook.base.errors import NotApplicable
from webhook.base.jsonvalues import strings_or_none
from webhook.core.shm import memory_at_dev_shm

SERVER_TYPE_ANNOTATION = "serving.kserve.io/server-type"


@dataclass(frozen=True)
class ModelFormat:
    """One entry of a runtime's `spec.supportedModelFormats`."""

    name: str
    version: str | None = None
    auto_select: bool = False
    priority: int | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    """The parts of a (Cluster)ServingRuntime that matter here.

    `command`/`args`/`image` are those of its kserve-container; the rest is
    what KServe's runtime selection reads. `created` is the RFC 3339
    creationTimestamp, which sorts as text. `dev_shm`: whether its kserve-container mounts a
    memory emptyDir of `spec.volumes` at /dev/shm (None: nothing there), as KServe's vLLM and
    huggingfaceserver runtimes do (config/runtimes/kserve-vllmserver.yaml, v0.20).
    """

    kind: str  # ServingRuntime | ClusterServingRuntime
    name: str
    image: str
    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    namespace: str = ""
    formats: tuple[ModelFormat, ...] = ()
    protocol_versions: tuple[str, ...] = ()
    disabled: bool = False
    multi_model: bool = False
    multi_node: bool = False
    server_type: str | None = None
    created: str = ""
    dev_shm: bool | None = None


def _format(entry: object) -> ModelFormat | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return None
    version, priority = entry.get("version"), entry.get("priority")
    return ModelFormat(
        entry["name"],
        version if isinstance(version, str) else None,
        entry.get("autoSelect") is True,
        priority if isinstance(priority, int) and not isinstance(priority, bool) else None,
    )


def spec_from_object(kind: str, obj: object) -> RuntimeSpec | None:
    """Read a runtime object (as the API or a manifest gives it); None if it has no usable container."""
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
    annotations = meta.get("annotations")
    server_type = annotations.get(SERVER_TYPE_ANNOTATION) if isinstance(annotations, dict) else None
    formats = spec.get("supportedModelFormats")
    namespace, created = meta.get("namespace"), meta.get("creationTimestamp")
    return RuntimeSpec(
        kind,
        str(meta.get("name", "")),
        str(chosen.get("image", "")),
        strings_or_none(chosen.get("command")),
        strings_or_none(chosen.get("args")),
        namespace=namespace if isinstance(namespace, str) else "",
        formats=tuple(f for f in map(_format, formats if isinstance(formats, list) else []) if f is not None),
        protocol_versions=strings_or_none(spec.get("protocolVersions")) or (),
        disabled=spec.get("disabled") is True,
        multi_model=spec.get("multiModel") is True,
        multi_node=spec.get("workerSpec") is not None,
        server_type=server_type if isinstance(server_type, str) else None,
        created=str(created) if created is not None else "",
        dev_shm=memory_at_dev_shm(chosen.get("volumeMounts"), spec.get("volumes")),
    )


@dataclass(frozen=True)
class StartedServer:
    """What a runtime starts (`server`) and a warning when that is a guess."""

    server: launch.Server
    note: str | None = None


def server_started(runtime: RuntimeSpec) -> StartedServer:
    """Which server the runtime starts; NotApplicable when args cannot reach it."""
    label = f"{runtime.kind} {runtime.name}"
    if not runtime.command:
        if runtime.server_type == "huggingfaceserver" or "huggingfaceserver" in runtime.image.lower():
            return StartedServer("huggingfaceserver")
        if runtime.server_type == "vllmserver" or "vllm" in runtime.image.lower():
            return StartedServer("vllm")
        return StartedServer("vllm", f"{label} uses its image's entrypoint; assuming it starts vLLM")
    found = launch.read([*runtime.command, *(runtime.args or ())])
    if isinstance(found, launch.ListLaunch):
        if found.call is not None:
            return StartedServer(found.call.server)
        raise NotApplicable(
            f"the InferenceService has no command, so it runs {label}'s {launch.describe(found.words)}, which does "
            f"not take vLLM's data-parallel flags; set spec.predictor.model.command to a vLLM launch or use a vLLM "
            f"runtime"
        )
    if found.commands is None:
        return StartedServer("vllm", f"{label}'s script could not be read; assuming it forwards its arguments to vLLM")
    if not found.calls:
        raise NotApplicable(
            f"the InferenceService has no command, so it runs {label}'s script, which starts no vLLM server; "
            f"set spec.predictor.model.command to a vLLM launch"
        )
    if not found.forwards():
        raise NotApplicable(
            f"the InferenceService has no command and {label}'s script does not forward \"$@\" to vLLM, so flags "
            f"in args would never reach it; set spec.predictor.model.command, or add \"$@\" to the runtime's vLLM line"
        )
    return StartedServer(found.calls[0][1].server)
