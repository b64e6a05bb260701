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
from webhook.kserve.images import STORAGE_URI_ENV, WATCHED_ENV, release_of, with_all2all_env
from webhook.kserve.selection import Resolution, resolve
from webhook.base.jsonvalues import string_list
from webhook.core.dra import claim_uses
from webhook.core.gpus import Gpus, visible, watched_env
from webhook.core.workload import Field, Launch, Role, SharedMemory, Workload
from webhook.kserve.pods import other_launches
from webhook.kserve.view import NamespaceView

KIND = "InferenceService"
KSERVE_CONTAINER = "kserve-container"  # constants.InferenceServiceContainerName, KServe v0.20
MULTI_NODE = (
    "spec.predictor.workerSpec makes this a multi-node Ray service (TP x PP over nodes), where single-pod "
    "data-parallel EP would be wrong; remove workerSpec to serve on one node, or use an "
    "LLMInferenceService with spec.worker for multi-node data-parallel EP"
)


DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
STANDARD_MODES = ("Standard", "RawDeployment")
"""Deployment modes that run the predictor as a plain Deployment, whose pods keep DRA claims (KServe v0.20
pkg/constants/constants.go: Standard, and its legacy name RawDeployment; Knative/Serverless pods go through
Knative Serving, which does not pass `resourceClaims` on; KServe's shipped config defaults to Serverless)."""


def read(obj: dict[str, object], view: NamespaceView | None) -> Workload:
    """The predictor as a role; NotApplicable when there is no predictor container.

    `view` gives the runtimes KServe could run (None: not checked) and the
    namespace's ResourceClaimTemplates that decide DRA GPU counts.
    """
    runtimes = view.runtimes if view is not None else None
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
        container=container,
        env_list=container.get("env"),
    )
    image = container.get("image")
    if isinstance(image, str):
        launch = launch._replace(image=image)
    env = watched_env(container, WATCHED_ENV)
    launch = with_all2all_env(launch, env)
    resolution = resolve(obj, runtimes) if runtimes is not None else None
    if resolution is not None:
        launch = _with_runtime(launch, resolution)
    if launch.image:
        launch = launch._replace(image_release=(view.release_of if view is not None else release_of)(launch.image))
    claims = claim_uses(container, predictor, where, "spec.predictor", view.claim_templates if view else None)
    if claims:
        launch = launch._replace(notes=(*launch.notes, *_knative_note(obj)))
    role = Role(
        Gpus(where, container.get("resources"), claims, visible(env)),
        (launch,),
        refusal=MULTI_NODE if predictor.get("workerSpec") is not None else None,
        shm=(_shared_memory(predictor, container, pointer, where, not own_image, resolution),),
    )
    others = _others(spec, predictor, pointer) if "containers" in predictor or "transformer" in spec else ()
    return Workload((role,), others=others,
                    models=lambda: _models(container, own_image, env))


def _models(container: dict[str, object], own_image: bool, env: dict[str, str | None]) -> tuple[str, ...]:
    """The names the predictor gives its model, for a policy's `models`: `storageUri` and `storage.path` of
    `spec.predictor.model`, or the custom container's literal env `STORAGE_URI` (KServe v0.20
    `CustomPredictor.GetStorageUri`, pkg/apis/serving/v1beta1/predictor_custom.go)."""
    if own_image:
        uri = env.get(STORAGE_URI_ENV) if env else None
        return (uri,) if uri else ()
    storage = container.get("storage")
    path = storage.get("path") if isinstance(storage, dict) else None
    return tuple(v for v in (container.get("storageUri"), path) if isinstance(v, str) and v)


def _others(spec: dict[str, object], predictor: dict[str, object], served: str) -> tuple[Launch, ...]:
    """The pods' containers besides the served one: every other `spec.predictor.containers` entry (KServe adds
    each to the predictor pod, beside `model`) and the transformer's."""
    skip = int(served.rpartition("/")[2]) if served.startswith("/spec/predictor/containers/") else None
    found = other_launches(predictor.get("containers"), "/spec/predictor/containers", "spec.predictor.containers",
                           skip)
    transformer = spec.get("transformer")
    if isinstance(transformer, dict):
        found += other_launches(transformer.get("containers"), "/spec/transformer/containers",
                                "spec.transformer.containers")
    return found


def _knative_note(obj: dict[str, object]) -> tuple[str, ...]:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    mode = annotations.get(DEPLOYMENT_MODE) if isinstance(annotations, dict) else None
    if mode in STANDARD_MODES:
        return ()
    if mode is None:
        return ("no deploymentMode: Knative mode (KServe's default config) drops DRA claims; set it to Standard",)
    return (f"deploymentMode {str(mode)[:20]} drops DRA claims (Knative); set {DEPLOYMENT_MODE}: Standard",)


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
    return launch._replace(server=started.server, runtime_args=resolution.runtime.args or (), notes=notes,
                           runtime_command=resolution.runtime.command)
