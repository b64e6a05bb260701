"""The InferenceService adapter (serving.kserve.io/v1beta1).

One role, the predictor, with one launch: `spec.predictor.model`, else the
`spec.predictor.containers[]` entry named `kserve-container`. With no command
KServe runs the runtime's command with the runtime's args first and the
object's after them, so the runtime (resolved as KServe resolves it, see
`selection`) decides which server parses the flags.
"""

from __future__ import annotations

from webhook.vllm.launch import server_of
from webhook.base.errors import Denied, NotApplicable
from webhook.kserve.servingruntime import server_started
from webhook.kserve.images import release_of, with_all2all_env
from webhook.kserve.selection import Resolution, Runtimes, resolve
from webhook.base.jsonvalues import string_list
from webhook.core.workload import Field, Launch, Role, SharedMemory, Workload

KIND = "InferenceService"
MULTI_NODE = (
    "spec.predictor.workerSpec makes this a multi-node Ray service (TP x PP over nodes), where single-pod "
    "data-parallel EP would be wrong; remove workerSpec to serve on one node, or use an "
    "LLMInferenceService with spec.worker for multi-node data-parallel EP"
)


def read(obj: dict[str, object], runtimes: Runtimes | None) -> Workload:
    """The predictor as a role; NotApplicable when there is no predictor container."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise NotApplicable("the InferenceService has no spec; expert parallelism needs spec.predictor.model")
    predictor = spec.get("predictor")
    if not isinstance(predictor, dict):
        raise NotApplicable("the InferenceService has no spec.predictor; expert parallelism needs spec.predictor.model")
    container, pointer, where, own_image = _locate(predictor)
    command = string_list(container.get("command"), f"{where}.command") or None
    args = string_list(container.get("args"), f"{where}.args")
    launch = Launch(
        where,
        Field(f"{pointer}/command", f"{where}.command", command),
        Field(f"{pointer}/args", f"{where}.args", args),
        server=server_of([*command, *(args or ())]) if command else "vllm",
        own_image=own_image,
    )
    image = container.get("image")
    if isinstance(image, str):
        launch = launch._replace(image=image)
    launch = with_all2all_env(launch, container)
    resolution = resolve(obj, runtimes) if runtimes is not None else None
    if resolution is not None:
        launch = _with_runtime(launch, resolution)
    if launch.image:
        launch = launch._replace(image_release=release_of(launch.image))
    role = Role(
        container.get("resources"),
        where,
        (launch,),
        refusal=MULTI_NODE if predictor.get("workerSpec") is not None else None,
        shm=(_shared_memory(predictor, container, pointer, where, not own_image, resolution),),
    )
    return Workload((role,))


def _shared_memory(predictor: dict[str, object], container: dict[str, object], pointer: str, where: str,
                   model_form: bool, resolution: Resolution | None) -> SharedMemory:
    """The predictor pod's /dev/shm: `spec.predictor.volumes` and the container's volumeMounts.

    KServe merges the runtime of `spec.predictor.model` into the pod, its volumes and mounts included
    (`MergePodSpec`, `MergeRuntimeContainers`, pkg/controller/v1beta1/inferenceservice/utils/utils.go, v0.20):
    there the webhook adds a volume only when the runtime it resolved (`resolution`) mounts nothing at
    /dev/shm. A custom container (`kserve-container`) gets no runtime.
    """
    provided_by, memory = "", True
    runtime = resolution.runtime if resolution is not None and model_form else None
    if model_form and runtime is None:  # KServe's vLLM and huggingfaceserver runtimes mount one; unknown here
        provided_by = "the runtime (not known here)"
    elif runtime is not None and runtime.dev_shm is not None:
        provided_by, memory = f"{runtime.kind} {runtime.name}", runtime.dev_shm
    return SharedMemory(
        Field("/spec/predictor/volumes", "spec.predictor.volumes", predictor.get("volumes")),
        Field(f"{pointer}/volumeMounts", f"{where}.volumeMounts", container.get("volumeMounts")),
        "spec.predictor", None, provided_by, memory,
    )


def _locate(predictor: dict[str, object]) -> tuple[dict[str, object], str, str, bool]:
    model = predictor.get("model")
    if model is not None:
        if not isinstance(model, dict):
            raise Denied("spec.predictor.model must be an object")
        return model, "/spec/predictor/model", "spec.predictor.model", False
    containers = predictor.get("containers")
    if isinstance(containers, list):
        for i, c in enumerate(containers):
            if isinstance(c, dict) and c.get("name") == "kserve-container":
                return c, f"/spec/predictor/containers/{i}", f"spec.predictor.containers[{i}]", True
    raise NotApplicable(
        "no predictor container found: expert parallelism needs spec.predictor.model "
        "or a spec.predictor.containers entry named kserve-container"
    )


def _with_runtime(launch: Launch, resolution: Resolution) -> Launch:
    """The args of the runtime KServe merges in (always put before the object's), and, for a launch
    without a command of its own, the server that runtime starts."""
    if resolution.runtime is not None and not launch.image:
        launch = launch._replace(image=resolution.runtime.image)  # KServe runs the runtime's image
    if launch.command.value:
        # the object's command replaces the runtime's; the runtime's args still come first
        return launch._replace(runtime_args=resolution.runtime.args or ()) if resolution.runtime else launch
    if resolution.runtime is None:
        return launch._replace(notes=(f"{resolution.how}: could not check that args reach vLLM",))
    try:
        started = server_started(resolution.runtime)
    except NotApplicable as e:
        return launch._replace(refusal=e.message)
    notes = (started.note,) if started.note else ()
    return launch._replace(server=started.server, runtime_args=resolution.runtime.args or (), notes=notes)
