"""The LLMInferenceService adapter (serving.kserve.io v1alpha1 and v1alpha2).

Roles: the object itself (decode, or the only role) and `spec.prefill` when
present, each with its own `parallelism`, `template` and optional `worker`.
KServe merges each role with a preset (LLMInferenceServiceConfig) by container
name and renders the preset's `bash -c` script, which ends in
`eval "exec vllm serve ... $@"`: the `main` container's args become `$@` and
are parsed by the shell a second time. The single-node preset renders only
`--tensor-parallel-size` from `parallelism`; the multi-node (LeaderWorkerSet)
data-parallel preset renders EP, TP, DP and DP-local, and the group size is
data / dataLocal. A `main` container with its own command replaces the preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from webhook.vllm.launch import server_of
from webhook.base.errors import Denied, NotApplicable
from webhook.kserve.images import WATCHED_ENV, ReleaseOf, release_of, with_all2all_env
from webhook.kserve.pods import other_launches
from webhook.kserve.view import NamespaceView
from webhook.core.dra import ClaimUse, Templates, claim_uses
from webhook.core.gpus import Gpus, visible, watched_env
from webhook.base.jsonvalues import string_list
from webhook.core.workload import Field, Launch, Role, SharedMemory, Workload
from webhook.vllm.command import ArgsForm

KIND = "LLMInferenceService"
MAIN = "main"
DSHM = "dshm"
"""The memory volume every preset mounts at /dev/shm of `main` (1Gi single node, 8Gi multi-node data
parallel: config/llmisvcconfig/config-llm-*.yaml, KServe v0.20); the object's volume of that name
replaces it in KServe's strategic merge by name (`mergeSpecs`, pkg/controller/v1alpha2/llmisvc/config_merge.go)."""


DRA_DEVICE_CLASS = "serving.kserve.io/exp-dra-device-class"
DRA_DEVICE_COUNT = "serving.kserve.io/exp-dra-device-count"
DRA_CONTAINER_NAME = "serving.kserve.io/exp-dra-container-name"
MANAGED_CLAIM = "managed-device"
"""KServe v0.20's Managed DRA (pkg/controller/v1alpha2/llmisvc/managed_dra.go, annotations in
pkg/constants/constants.go): with `exp-dra-device-class` set, the controller creates a ResourceClaimTemplate
`<name>-managed-dra` with one request `device` of `exactly: {deviceClassName, count}` (count from
`exp-dra-device-count`, trimmed, default 1, refused below 1 or when not a number), adds pod claim
`managed-device` to every pod (template, worker, prefill's) and gives it to the container named by
`exp-dra-container-name`, else to the pod's first container."""


def read(obj: dict[str, object], view: NamespaceView | None) -> Workload:
    """The roles of an LLMInferenceService; `view` gives the namespace's ResourceClaimTemplates (its runtimes
    are not used: presets, not runtimes, start vLLM)."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise NotApplicable("the LLMInferenceService has no spec; expert parallelism needs spec.template")
    prefill = spec.get("prefill")
    gpus = _GpuReader(view.claim_templates if view is not None else None, _managed(obj))
    releases = view.release_of if view is not None else release_of
    roles = [_with_shm(_role(spec, "/spec", "spec", gpus, releases), spec, "/spec", "spec")]
    if prefill is not None:
        if not isinstance(prefill, dict):
            raise Denied("spec.prefill must be an object")
        roles.append(_with_shm(_role(prefill, "/spec/prefill", "spec.prefill", gpus, releases), prefill, "/spec/prefill",
                               "spec.prefill"))
    owned = "parallelism and the main containers' args"
    others = _others(spec, "/spec", "spec")
    if isinstance(prefill, dict):
        others += _others(prefill, "/spec/prefill", "spec.prefill")
    configs = view.llm_configs if view is not None else None
    hidden: tuple[str, ...] = ()
    if configs is None:
        hidden = (f"spec.baseRefs names presets ({_refs(spec.get('baseRefs'))}) whose containers and args the "
                  f"webhook cannot read here; write main's settings in the object instead",) \
            if spec.get("baseRefs") else ()
    else:
        presets = _preset_launches(spec.get("baseRefs"), configs)
        if presets is None:
            hidden = (f"the namespace has more than {MAX_PRESETS} LLMInferenceServiceConfigs this object could "
                      f"merge; the webhook reads at most {MAX_PRESETS}",)
        else:
            others += presets
    return Workload(tuple(roles), owned=owned, owned_short=owned, others=others, hidden=hidden,
                    models=lambda: _models(spec))


WELL_KNOWN_PRESET = "config-llm-"
"""What the names of KServe's own presets contain (`config-llm-template`, `config-llm-worker-data-parallel`, ...,
possibly behind a version prefix: pkg/controller/v1alpha2/llmisvc/config_merge.go, v0.20). KServe looks each
one up in the object's namespace before its own, so a namespace's config of such a name replaces the
platform's for every LLMInferenceService there."""


MAX_PRESETS = 16
"""The most presets of one namespace the webhook reads for one object (KServe merges its few well-known ones and
the `baseRefs`); each may hold scripts up to the shell limits, so the work per review stays bounded. Beyond it,
what the presets do is unknown."""


def _preset_launches(refs: object, configs: Mapping[str, Mapping[str, object]]) -> tuple[Launch, ...] | None:
    """The containers of the namespace's own presets KServe would merge into this object (those named by
    `baseRefs`, and those named like one of KServe's presets), read like the object's (`main` without a command
    is `eval`ed by the preset's script); presets found only in KServe's namespace are the platform's. None when
    more than `MAX_PRESETS` would be read."""
    names = {str(r.get("name")) for r in refs if isinstance(r, dict)} if isinstance(refs, list) else set()
    out: tuple[Launch, ...] = ()
    read = 0
    for name, config in configs.items():
        if name not in names and WELL_KNOWN_PRESET not in name:
            continue
        read += 1
        if read > MAX_PRESETS:
            return None
        spec = config.get("spec")
        if not isinstance(spec, dict):
            continue
        for body, where in ((spec, "spec"), (spec.get("prefill"), "spec.prefill")):
            if not isinstance(body, dict):
                continue
            for part in ("template", "worker"):
                pod = body.get(part)
                if isinstance(pod, dict):
                    found = other_launches(pod.get("containers"), f"/{name}/{where}/{part}/containers",
                                           f"LLMInferenceServiceConfig {name} {where}.{part}.containers")
                    out += tuple(launch._replace(form="eval") if isinstance(launch.container, dict)
                                 and launch.container.get("name") == MAIN and not launch.command.value else launch
                                 for launch in found)
    return out


def _refs(refs: object) -> str:
    names = [str(r.get("name"))[:40] for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []
    return ", ".join(names[:3]) or "?"


def _others(body: dict[str, object], pointer: str, where: str) -> tuple[Launch, ...]:
    """The role's pods' containers other than `main` (KServe merges each into its pod as written)."""
    found: tuple[Launch, ...] = ()
    for part in ("template", "worker"):
        pod = body.get(part)
        if isinstance(pod, dict):
            main = _main(pod, f"{where}.{part}")
            found += other_launches(pod.get("containers"), f"{pointer}/{part}/containers",
                                    f"{where}.{part}.containers", main[0] if main else None)
    return found


def _models(spec: dict[str, object]) -> tuple[str, ...]:
    """The names the object gives its model, for a policy's `models`: `spec.model.uri` and the served name
    `spec.model.name` (KServe v0.20 `LLMModelSpec`, pkg/apis/serving/v1alpha1/llm_inference_service_types.go)."""
    model = spec.get("model")
    if not isinstance(model, dict):
        return ()
    return tuple(v for v in (model.get("uri"), model.get("name")) if isinstance(v, str) and v)


def _main(pod: object, where: str) -> tuple[int, dict[str, object]] | None:
    if pod is None:
        return None
    if not isinstance(pod, dict):
        raise Denied(f"{where} must be an object")
    containers = pod.get("containers")
    if containers is None:
        return None
    if not isinstance(containers, list):
        raise Denied(f"{where}.containers must be a list")
    for i, c in enumerate(containers):
        if isinstance(c, dict) and c.get("name") == MAIN:
            return i, c
    return None


def _launch(container: dict[str, object], pointer: str, where: str, releases: ReleaseOf) -> Launch:
    command = string_list(container.get("command"), f"{where}.command") or None
    args = string_list(container.get("args"), f"{where}.args")
    form: ArgsForm = "argv" if command else "eval"
    raw_image = container.get("image")
    image = raw_image if isinstance(raw_image, str) else ""
    return with_all2all_env(Launch(
        where,
        Field(f"{pointer}/command", f"{where}.command", command),
        Field(f"{pointer}/args", f"{where}.args", args),
        form=form,
        server=server_of([*command, *(args or ())]) if command else "vllm",
        image=image,
        image_release=releases(image) if image else None,
        container=container,
        env_list=container.get("env"),
    ), watched_env(container, WATCHED_ENV))


def _managed(obj: dict[str, object]) -> tuple[str, dict[str, object] | None, str | None] | None:
    """KServe's Managed DRA of the object: (device class, the template KServe creates or None, container name
    annotation); None without the annotation. Denied when KServe's controller would refuse the count."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict) or DRA_DEVICE_CLASS not in annotations:
        return None
    device_class = str(annotations[DRA_DEVICE_CLASS]).strip()
    raw = annotations.get(DRA_DEVICE_COUNT)
    text = str(raw).strip() if raw is not None else ""
    count = 1
    if text:
        digits = text[1:] if text[:1] in "+-" else text
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 6) or text.startswith("-") or int(digits) < 1:
            raise Denied(
                f"{DRA_DEVICE_COUNT} is {text[:40]!r}; KServe's controller refuses it: write a whole number of at "
                f"least 1, e.g. \"8\""
            )
        count = int(digits)
    template: dict[str, object] = {"spec": {"spec": {"devices": {"requests": [
        {"name": "device", "exactly": {"deviceClassName": device_class, "count": count}}
    ]}}}}
    name = annotations.get(DRA_CONTAINER_NAME)
    return device_class, template, str(name).strip() if name is not None else None


class _GpuReader(NamedTuple):
    """Reads the GPUs of a pod's main container: its own claims, and KServe's managed ones where they go."""

    templates: Templates | None
    managed: tuple[str, dict[str, object] | None, str | None] | None

    def gpus(self, pod: dict[str, object], index: int, container: dict[str, object], launch: Launch,
             pod_where: str) -> Gpus:
        """The GPUs of `launch`'s container (at `index` in `pod`), whose env the launch has read already."""
        where = launch.where
        claims = claim_uses(container, pod, where, pod_where, self.templates)
        if self.managed is not None:
            claims = (*claims, *self._managed_use(index, container, pod_where))
        return Gpus(where, container.get("resources"), claims, visible(dict(launch.env)))

    def _managed_use(self, index: int, container: dict[str, object], pod_where: str) -> tuple[ClaimUse, ...]:
        assert self.managed is not None
        _, template, wanted = self.managed
        label = f"{pod_where} (Managed DRA)"
        if wanted:
            return (ClaimUse(MANAGED_CLAIM, None, label, "managed", template),) if wanted == container.get("name") \
                else ()
        if index == 0:
            return (ClaimUse(MANAGED_CLAIM, None, label, "managed", template),)
        return (ClaimUse(MANAGED_CLAIM, None, label, problem=(
            f"with Managed DRA KServe gives the devices to the pod's first container, and main is not first in "
            f"{pod_where}.containers: set {DRA_CONTAINER_NAME}: main"
        )),)


def _role(body: dict[str, object], pointer: str, where: str, reader: _GpuReader, releases: ReleaseOf) -> Role:
    parallelism = body.get("parallelism")
    if parallelism is not None and not isinstance(parallelism, dict):
        raise Denied(f"{where}.parallelism must be an object")
    field = Field(f"{pointer}/parallelism", f"{where}.parallelism", parallelism)
    main = _main(body.get("template"), f"{where}.template")
    if main is None:
        return Role(Gpus(f"{where}.template"), (), field, refusal=(
            f"the webhook needs the GPU count of {where}: add a container named main to {where}.template.containers "
            f"with resources.limits (e.g. nvidia.com/gpu: \"8\"); GPUs set only in a preset (baseRefs) are not "
            f"visible to it"
        ))
    i, container = main
    main_where = f"{where}.template.containers[{i}]"
    launches = [_launch(container, f"{pointer}/template/containers/{i}", main_where, releases)]
    template = body["template"]
    assert isinstance(template, dict)
    gpus = reader.gpus(template, i, container, launches[0], f"{where}.template")
    worker = body.get("worker")
    if worker is None:
        return Role(gpus, tuple(launches), field)
    worker_main = _main(worker, f"{where}.worker")
    if worker_main is None:
        return Role(gpus, tuple(launches), field, layout="multi", refusal=(
            f"{where}.worker has no container named main: add one with the same resources.limits as "
            f"{main_where}, so that the webhook sees the GPUs of every node"
        ))
    j, worker_container = worker_main
    worker_where = f"{where}.worker.containers[{j}]"
    launches.append(_launch(worker_container, f"{pointer}/worker/containers/{j}", worker_where, releases))
    assert isinstance(worker, dict)
    worker_gpus = reader.gpus(worker, j, worker_container, launches[1], f"{where}.worker")
    return Role(gpus, tuple(launches), field, layout="multi", worker_gpus=worker_gpus)



def _with_shm(role: Role, body: dict[str, object], pointer: str, where: str) -> Role:
    """The role with its pods' /dev/shm: the template's and, in a multi-node role, the worker's (each
    `dshm`, which the preset mounts in `main`)."""
    pods = []
    for part in ("template", "worker") if role.layout == "multi" else ("template",):
        pod = body.get(part)
        found = _main(pod, f"{where}.{part}")
        if not isinstance(pod, dict) or found is None:
            continue
        i, container = found
        pods.append(SharedMemory(
            Field(f"{pointer}/{part}/volumes", f"{where}.{part}.volumes", pod.get("volumes")),
            Field(f"{pointer}/{part}/containers/{i}/volumeMounts", f"{where}.{part}.containers[{i}].volumeMounts",
                  container.get("volumeMounts")),
            f"{where}.{part}",
            preset_volume=DSHM,
        ))
    return role._replace(shm=tuple(pods))
