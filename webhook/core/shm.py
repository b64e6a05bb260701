"""/dev/shm: a pod running TP x DP > 1 gets a memory-backed volume there, of the policy's size.

A container's /dev/shm is 64 MiB unless a volume is mounted there (the container runtime's
default, kubernetes/kubernetes#28272). vLLM's shared-memory message queues (vllm/distributed/
device_communicators/shm_broadcast.py) and NCCL need far more once one pod runs several ranks
(TP x DP > 1); short of it they fail with "Error while creating shared memory segment". KServe's
vLLM and huggingfaceserver ClusterServingRuntimes mount an emptyDir of medium Memory there
(config/runtimes/kserve-vllmserver.yaml, v0.20), its LLMInferenceService presets a `dshm` of
1Gi (single node, config/llmisvcconfig/config-llm-template.yaml) or 8Gi (multi-node data
parallel); a custom predictor container has none.

The rule, for each pod of a role (`SharedMemory`) whose TP x DP is above 1, policy
`sharedMemory: add` (`warn` says the same without changing anything; `off` does nothing):

- a memory emptyDir already mounted at /dev/shm stays as it is; but the preset's volume
  (`preset_volume`, an LLMInferenceService's `dshm`) below the policy's `sharedMemorySize` is
  raised to it;
- /dev/shm mounted from another kind of volume: a warning, nothing changed;
- nothing at /dev/shm, but a runtime KServe merges in mounts a memory volume there: nothing;
- nothing at all: the webhook adds an emptyDir `{medium: Memory, sizeLimit: <size>}` to the pod's
  volumes (named `dshm`, or `dshm-ep` when that name is taken) and, unless the kind's preset mounts
  it (LLMInferenceService), a mount at /dev/shm to the vLLM container.

KServe merges the object into the runtime or preset with Kubernetes' strategic merge patch
(`MergePodSpec` and `MergeRuntimeContainers` in pkg/controller/v1beta1/inferenceservice/utils/utils.go,
`mergeSpecs` in pkg/controller/v1alpha2/llmisvc/config_merge.go, v0.20): volumes by name (so the
object's `dshm` replaces the preset's source), volume mounts by mountPath (so an added mount at
/dev/shm never duplicates a runtime's). The fields changed join the undo record like the flags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

from webhook.core.options import Options
from webhook.core.workload import SharedMemory

PATH = "/dev/shm"
VOLUME = "dshm"

# k8s.io/apimachinery/pkg/api/resource/quantity.go: <sign><digits>[.<digits>]<suffix>, the suffix binary
# (Ki..Ei), decimal (n u m "" k M G T P E) or an exponent (e3, E-2)
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]{1,3})?")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity(text: object) -> Fraction | None:
    """The value of a Kubernetes quantity ("8Gi", "1e9", "512M"), None when it is not one.

    Exponents are limited to three digits and the text to 64 characters, so that no input costs much.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        return Fraction(text)
    if not isinstance(text, str) or len(text) > 64:
        return None
    found = _QUANTITY.fullmatch(text)
    if found is None:
        return None
    number, suffix = Fraction(found.group(1)), found.group(2) or ""
    if suffix in _BINARY:
        return number * Fraction(1024) ** _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * Fraction(10) ** _DECIMAL[suffix]
    return number * Fraction(10) ** int(suffix[1:]) if suffix else number


def _named(items: object, key: str, value: str) -> tuple[int, dict[str, object]] | None:
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get(key) == value:
                return i, item
    return None


def _mount(mounts: object) -> dict[str, object] | None:
    if isinstance(mounts, list):
        for item in mounts:
            if isinstance(item, dict) and isinstance(item.get("mountPath"), str) \
                    and item["mountPath"].rstrip("/") == PATH:
                return item
    return None


def memory_at_dev_shm(mounts: object, volumes: object) -> bool | None:
    """Whether a container's `volumeMounts` put a memory emptyDir from the pod's `volumes` at /dev/shm;
    None when nothing is mounted there. A mount whose volume is not in `volumes` counts as not in memory."""
    mount = _mount(mounts)
    if mount is None:
        return None
    name = mount.get("name")
    found = _named(volumes, "name", name) if isinstance(name, str) else None
    return found is not None and _memory(found[1])


def _memory(volume: Mapping[str, object]) -> bool:
    empty = volume.get("emptyDir")
    return isinstance(empty, dict) and empty.get("medium") == "Memory"


def _describe(volume: Mapping[str, object]) -> str:
    kinds = [k for k in volume if k != "name"]
    return "emptyDir on disk" if kinds == ["emptyDir"] else (kinds[0] if kinds else "no source")


def plan(pods: tuple[SharedMemory, ...], out: dict[str, object], ranks: int, options: Options,
         warnings: list[str]) -> None:
    """Give each pod a memory /dev/shm of the policy's size where `ranks` (TP x DP) is above 1.

    `out` holds the values planned so far by pointer; a pod's fields not in it are read from the
    object (`Field.value`). The fields this changes are set in `out`; a warning names each change,
    or, under `sharedMemory: warn`, each change it would make.
    """
    if ranks <= 1 or options.shared_memory == "off":
        return
    for pod in pods:
        _plan_pod(pod, out, ranks, options, warnings)


def _plan_pod(pod: SharedMemory, out: dict[str, object], ranks: int, options: Options, warnings: list[str]) -> None:
    mounts = out.get(pod.mounts.pointer, pod.mounts.value)
    if mounts is None and pod.provided_by and pod.provided_memory:
        return  # the runtime's memory /dev/shm: the common InferenceService, decided at once
    volumes = out.get(pod.volumes.pointer, pod.volumes.value)
    if (volumes is not None and not isinstance(volumes, list)) or (mounts is not None and not isinstance(mounts, list)):
        return  # not a pod's lists: the API server's schema refuses it, nothing for the webhook to add to
    size = options.shared_memory_size
    why = f"TP x DP = {ranks}"
    mount = _mount(mounts)
    name = mount.get("name") if mount is not None else pod.preset_volume
    if mount is None and pod.preset_volume is None and pod.provided_by:
        if not pod.provided_memory:
            warnings.append(f"{pod.provided_by} mounts /dev/shm from a volume not in memory; {why} needs it in memory")
        return
    if not isinstance(name, str):  # nothing at /dev/shm: add a volume (and its mount)
        _add(pod, out, volumes, mounts, size, why, options, warnings)
        return
    found = _named(volumes, "name", name)
    if found is None:
        if mount is None:  # the preset's volume, not yet in the object
            _add(pod, out, volumes, mounts, size, why, options, warnings)
        return  # mounted from a volume the runtime brings (or none: the API server refuses the pod)
    i, volume = found
    if not _memory(volume):
        warnings.append(
            f"{pod.where}: /dev/shm is volume {name} ({_describe(volume)}), not memory; {why} needs emptyDir Memory"
        )
        return
    empty = volume["emptyDir"]
    assert isinstance(empty, dict)
    limit = empty.get("sizeLimit")
    if name != pod.preset_volume or not _below(limit, size):
        return  # the user's own memory volume, or already big enough
    if options.shared_memory == "warn":
        warnings.append(f"{pod.where}: volume {name} ({limit or 'preset size'}) is small for {why}; raise it to {size}")
        return
    assert isinstance(volumes, list)
    raised = list(volumes)
    raised[i] = {**volume, "emptyDir": {**empty, "sizeLimit": size}}
    out[pod.volumes.pointer] = raised
    warnings.append(f"raised {pod.where} volume {name} (/dev/shm) from {limit or 'the preset size'} to {size} for {why}")


def rebase(original: object, written: object, current: object) -> object:
    """The original of a `volumes` or `volumeMounts` list (or a container's `env`, whose entries are keyed by
    name alike) that was edited after the webhook wrote it.

    `original` is the list before the webhook (None: absent), `written` what the webhook made of it,
    `current` the list as edited since. The result is `current` with the webhook's own change taken
    back: entries it added are dropped, an entry it changed (same name and mountPath) gets its
    original back, everything else (the edit) stays. So turning EP off later keeps the edit.
    """
    if not isinstance(current, list) or not isinstance(written, list):
        return current
    before = original if isinstance(original, list) else []
    added = [w for w in written if w not in before]
    replaced = {_key(o): o for o in before if o not in written}
    out = []
    for item in current:
        if item in added:
            if _key(item) in replaced:
                out.append(replaced[_key(item)])
            continue
        out.append(item)
    return out if out or original is not None else None


def _key(item: object) -> tuple[object, object]:
    return (item.get("name"), item.get("mountPath")) if isinstance(item, dict) else (None, None)


def _below(limit: object, size: str) -> bool:
    """Whether a preset volume's sizeLimit is below `size`; absent counts as below (the preset's own, 1Gi in the
    single-node presets, then stays); one that is not a quantity is left alone."""
    if limit is None:
        return True
    current, wanted = quantity(limit), quantity(size)
    return current is not None and wanted is not None and current < wanted


def _add(pod: SharedMemory, out: dict[str, object], volumes: object, mounts: object, size: str, why: str,
         options: Options, warnings: list[str]) -> None:
    if options.shared_memory == "warn":
        warnings.append(f"{pod.where} has no memory /dev/shm (64Mi); {why} needs one: emptyDir Memory, {size}")
        return
    name = pod.preset_volume or (VOLUME if _named(volumes, "name", VOLUME) is None else f"{VOLUME}-ep")
    volume = {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": size}}
    out[pod.volumes.pointer] = [*(volumes if isinstance(volumes, list) else ()), volume]
    if pod.preset_volume is None:
        out[pod.mounts.pointer] = [*(mounts if isinstance(mounts, list) else ()), {"name": name, "mountPath": PATH}]
    warnings.append(f"added /dev/shm to {pod.where}: volume {name}, emptyDir Memory {size}, for {why}")
