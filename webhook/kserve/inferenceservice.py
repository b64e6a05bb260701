"""The InferenceService adapter (serving.kserve.io/v1beta1).

One role, the predictor, with one launch: `spec.predictor.model`, else the
`spec.predictor.containers[]` entry KServe runs, `kserve-container` once KServe's
defaulter has named it (see `served_container`). With no command
KServe runs the runtime's command with the runtime's args first and the
object's after them, so the runtime (resolved as KServe resolves it, see
`selection`) decides which server parses the flags.
"""

from __future__ import annotations

from webhook.vllm.launch import server_of
from webhook.base.errors import Denied, NotApplicable
from webhook.kserve.servingruntime import server_started
from webhook.kserve.images import release_of, with_all2all_env
from webhook.kserve.selection import Runtimes, resolve
from webhook.base.jsonvalues import string_list
from webhook.core.workload import Field, Launch, Role, Workload

KIND = "InferenceService"
KSERVE_CONTAINER = "kserve-container"  # constants.InferenceServiceContainerName, KServe v0.20
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
    if runtimes is not None:
        launch = _with_runtime(obj, launch, runtimes)
    if launch.image:
        launch = launch._replace(image_release=release_of(launch.image))
    role = Role(
        container.get("resources"),
        where,
        (launch,),
        refusal=MULTI_NODE if predictor.get("workerSpec") is not None else None,
    )
    return Workload((role,))


def _locate(predictor: dict[str, object]) -> tuple[dict[str, object], str, str, bool]:
    model = predictor.get("model")
    if model is not None:
        if not isinstance(model, dict):
            raise Denied("spec.predictor.model must be an object")
        return model, "/spec/predictor/model", "spec.predictor.model", False
    containers = predictor.get("containers")
    if isinstance(containers, list):
        i = served_container(containers)
        if i is not None and isinstance(containers[i], dict):
            return containers[i], f"/spec/predictor/containers/{i}", f"spec.predictor.containers[{i}]", True
    raise NotApplicable(
        "no predictor container found: expert parallelism needs spec.predictor.model, a single "
        "spec.predictor.containers entry, or one named kserve-container (KServe runs that one)"
    )


def served_container(containers: list[object]) -> int | None:
    """The index of the custom predictor container KServe runs, whether or not its defaulter ran yet.

    KServe v0.20's defaulter (`CustomPredictor.Default`, pkg/apis/serving/v1beta1/predictor_custom.go)
    names the first container `kserve-container` when it is the only one or has no name; the
    controller then runs the first container of that name (`CustomPredictor.GetContainer`). The
    webhook may run before that defaulter, so it decides on the container as named afterwards and
    leaves the renaming to KServe. None when no container will be `kserve-container`.
    """
    names = [c.get("name") if isinstance(c, dict) else None for c in containers]
    if names and (len(names) == 1 or not names[0]):
        names[0] = KSERVE_CONTAINER
    return names.index(KSERVE_CONTAINER) if KSERVE_CONTAINER in names else None


def _with_runtime(obj: dict[str, object], launch: Launch, runtimes: Runtimes) -> Launch:
    """The args of the runtime KServe merges in (always put before the object's), and, for a launch
    without a command of its own, the server that runtime starts."""
    resolution = resolve(obj, runtimes)
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
