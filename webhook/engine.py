"""The pure core: an InferenceService in, a verdict out.

`mutate` never performs I/O and never raises: every problem with the object
becomes a denial whose message says what is wrong and how to fix it. The
HTTP server and the offline CLI both call it.
"""

from __future__ import annotations

from webhook import flags, patch, state
from webhook.argv import Want, shorten
from webhook.container import Container, find_ep_flag, flag_value, locate, rewrite, server_of
from webhook.errors import Denied, NotApplicable
from webhook.gpus import count_gpus
from webhook.launch import Server
from webhook.runtime import check as check_runtime
from webhook.selection import Runtimes, resolve
from webhook.settings import ENABLED, STATE, TENSOR_PARALLEL_SIZE, Options, Request, ep_enabled, read_request
from webhook.verdict import Verdict

KIND = "InferenceService"
API_GROUP = "serving.kserve.io"


def wants_for(request: Request, data_parallel_size: int, server: Server = "vllm") -> list[Want]:
    """The flags that make the server run EP with the requested layout.

    huggingfaceserver sets the tensor parallel size to the GPU count itself, so
    there EP spans the TP group: only EP on, and no data-parallel size.
    """
    if server == "huggingfaceserver":
        wants = [Want(flags.ENABLE_EP, negation=flags.DISABLE_EP), Want(flags.DP, present=False)]
    else:
        wants = [
            Want(flags.ENABLE_EP, negation=flags.DISABLE_EP),
            Want(flags.TP, str(request.tensor_parallel_size)),
            Want(flags.DP, str(data_parallel_size)),
        ]
    if request.all2all_backend is not None:
        wants.append(Want(flags.ALL2ALL, request.all2all_backend))
    if request.eplb is True:
        wants.append(Want(flags.ENABLE_EPLB, negation=flags.DISABLE_EPLB))
    elif request.eplb is False:
        wants.append(Want(flags.ENABLE_EPLB, present=False))
    if request.eplb_config is not None:
        wants.append(Want(flags.EPLB_CONFIG, request.eplb_config))
    return wants


def mutate(obj: object, options: Options | None = None, runtimes: Runtimes | None = None) -> Verdict:
    """Decide on one InferenceService: allow, allow with a patch, or deny.

    `runtimes` are the ServingRuntimes of the object's namespace and the
    ClusterServingRuntimes; with them, the runtime KServe will run for an
    object without a command is resolved as KServe resolves it (see
    `selection`). Without them (None) that runtime is not checked.
    """
    options = options or Options()
    if options.mode == "optIn" and _not_asking(obj):
        return _ALLOW  # the common case when every InferenceService reaches the webhook
    try:
        return _mutate(obj, options, runtimes)
    except Denied as denied:
        return Verdict.deny(denied.message)


_ALLOW = Verdict.allow()


def _not_asking(obj: object) -> bool:
    """Well-formed metadata without ep.enabled or the webhook's state: nothing to do in opt-in mode."""
    if not isinstance(obj, dict):
        return False
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return False
    annotations = metadata.get("annotations")
    if annotations is None:
        return True
    return isinstance(annotations, dict) and ENABLED not in annotations and STATE not in annotations


def _annotations(obj: dict[str, object]) -> dict[str, object]:
    metadata = obj.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise Denied("metadata must be an object")
    annotations = metadata.get("annotations")
    if annotations is None:
        return {}
    if not isinstance(annotations, dict):
        raise Denied("metadata.annotations must be a map of strings")
    return annotations


def _wants_ep(enabled: bool | None, options: Options) -> bool:
    """Whether EP should be on, given the annotation and the namespace's policy."""
    rule = f"policy rule {options.rule!r}"
    if options.mode == "forbid":
        if enabled:
            raise Denied(f"expert parallelism is forbidden in this namespace ({rule}); remove the ep.enabled annotation")
        return False
    if options.mode == "enforce":
        if enabled is False and not options.allow_opt_out:
            raise Denied(
                f'expert parallelism is required in this namespace ({rule}) and opting out is not allowed; '
                f'remove ep.enabled: "false"'
            )
        return enabled is not False
    return bool(enabled)


def _mutate(obj: object, options: Options, runtimes: Runtimes | None) -> Verdict:
    if not isinstance(obj, dict):
        raise Denied("the object is not a JSON object; expected an InferenceService")
    annotations = _annotations(obj)
    enabled = ep_enabled(annotations)
    stored = state.read(annotations)
    want = _wants_ep(enabled, options)
    if not want:
        if stored is None and options.mode != "forbid":
            return Verdict.allow()
        return _turn_off(obj, stored, options)
    try:
        return _turn_on(obj, annotations, stored, options, runtimes)
    except NotApplicable as na:
        if enabled is None and options.mode == "enforce":
            # enforced by policy on an object that did not ask and cannot have it: pass untouched
            return Verdict.allow().with_warnings([shorten(f"EP not applied: {na.message}", 119)])
        raise


def _turn_off(obj: dict[str, object], stored: state.State | None, options: Options) -> Verdict:
    """Undo an earlier change if there is one; in forbid mode also refuse hand-written EP."""
    try:
        container = locate(obj)
    except NotApplicable:
        if stored is None:
            return Verdict.allow()
        raise
    current = (container.command, container.args)
    new, verdict = current, Verdict.allow()
    if stored is not None:
        if stored.container == container.pointer and stored.applied == state.digest(*current):
            new = (stored.command, stored.args)
            verdict = _result(obj, container, current, new, None).with_warnings(
                ["EP is off: restored the command and args the webhook had changed"]
            )
        else:
            verdict = _result(obj, container, current, current, None).with_warnings(
                ["EP is off; command/args were edited after the webhook changed them, so they stay as they are"]
            )
    if options.mode == "forbid":
        found = find_ep_flag(*new)
        if found:
            raise Denied(
                f"expert parallelism is forbidden in this namespace (policy rule {options.rule!r}), "
                f"but the command sets {found}; remove it"
            )
    return verdict


def _turn_on(
    obj: dict[str, object],
    annotations: dict[str, object],
    stored: state.State | None,
    options: Options,
    runtimes: Runtimes | None,
) -> Verdict:
    container = locate(obj)
    _refuse_multi_node(obj)
    current = (container.command, container.args)
    untouched_since = (
        stored is not None
        and stored.container == container.pointer
        and stored.applied == state.digest(*current)
    )
    request = read_request(annotations, options)
    gpus = count_gpus(container.resources, container.where, options.gpu_resources)
    notes: list[str] = []
    server, runtime_args = _server(obj, container, runtimes, notes)
    if server == "huggingfaceserver":
        wants = _huggingfaceserver_wants(container, runtime_args, request, TENSOR_PARALLEL_SIZE in annotations, gpus)
        notes.append(f"huggingfaceserver sets tensor parallel size to the GPU count ({gpus}): EP runs as TP {gpus}, DP 1")
    else:
        wants = _vllm_wants(request, gpus, options)
    if request.all2all_backend in flags.FALLBACK_ALL2ALL_BACKENDS:
        notes.append(
            f"all2all backend {request.all2all_backend} is deprecated in {flags.ALL2ALL_RELEASE}: "
            f"vLLM falls back to its default backend"
        )
    reject = options.on_conflict == "reject"

    # Flags the webhook wrote itself are never "hand-written conflicts".
    on_current = rewrite(container, current[0], current[1], wants, reject and not untouched_since)
    if (on_current.command, on_current.args) == current:
        # Already EP-configured for this request. If the webhook changed it earlier and
        # something else edited other words since (another mutating webhook, a hand edit),
        # keep the original for undo and track the new digest.
        if stored is None or stored.container != container.pointer or untouched_since:
            return Verdict.allow()
        tracked = state.State(stored.container, stored.command, stored.args, state.digest(*current))
        return _result(obj, container, current, current, tracked)

    # Recompute from the original while the webhook's last output is untouched, so that
    # a new GPU request or TP gives a fresh layout and undo stays exact.
    if stored is not None and untouched_since:
        base = (stored.command, stored.args)
        result = rewrite(container, base[0], base[1], wants, reject)
    else:
        base, result = current, on_current
    new = (result.command, result.args)
    new_state = None if new == base else state.State(container.pointer, base[0], base[1], state.digest(*new))
    # warnings describe the change against what is deployed
    return _result(obj, container, current, new, new_state).with_warnings([*on_current.warnings, *notes])


def _vllm_wants(request: Request, gpus: int, options: Options) -> list[Want]:
    """vLLM's own server: TP as asked, DP = GPUs / TP."""
    tp = request.tensor_parallel_size
    if gpus % tp:
        raise Denied(
            f"the pod gets {gpus} GPUs, which tensor parallel size {tp} does not divide; "
            f"set ep.tensor-parallel-size to a divisor of {gpus} or change the GPU limit"
        )
    dp = gpus // tp
    if options.max_data_parallel_size is not None and dp > options.max_data_parallel_size:
        raise Denied(
            f"data parallel size {dp} ({gpus} GPUs / TP {tp}) exceeds the policy's maximum of "
            f"{options.max_data_parallel_size}; request fewer GPUs or a larger ep.tensor-parallel-size"
        )
    return wants_for(request, dp)


def _huggingfaceserver_wants(
    container: Container, runtime_args: tuple[str, ...], request: Request, tp_asked: bool, gpus: int
) -> list[Want]:
    """huggingfaceserver: TP is the GPU count whatever the flags say; the vLLM backend must be in use."""
    if tp_asked and request.tensor_parallel_size != gpus:
        raise Denied(
            f"{TENSOR_PARALLEL_SIZE} is {request.tensor_parallel_size}, but huggingfaceserver always uses tensor "
            f"parallel size = GPU count ({gpus}); remove the annotation, or run vLLM itself (runtime "
            f"kserve-vllmserver, modelFormat vLLM) for a TP x DP layout"
        )
    backend = flag_value(runtime_args, container.command, container.args, "--backend")
    if backend is not None and backend not in ("vllm", "auto"):
        raise Denied(
            f"huggingfaceserver runs with --backend={backend}, which is not vLLM, so expert parallelism cannot "
            f"apply; use --backend=vllm (or drop --backend) or remove the ep.enabled annotation"
        )
    return wants_for(request, 1, "huggingfaceserver")


def _refuse_multi_node(obj: dict[str, object]) -> None:
    spec = obj.get("spec")
    predictor = spec.get("predictor") if isinstance(spec, dict) else None
    if isinstance(predictor, dict) and predictor.get("workerSpec") is not None:
        raise NotApplicable(
            "spec.predictor.workerSpec makes this a multi-node Ray service (TP x PP over nodes), where single-pod "
            "data-parallel EP would be wrong; remove workerSpec to serve on one node, or use an "
            "LLMInferenceService with spec.worker for multi-node data-parallel EP"
        )


def _server(
    obj: dict[str, object], container: Container, runtimes: Runtimes | None, notes: list[str]
) -> tuple[Server, tuple[str, ...]]:
    """Which server will parse the flags, and the runtime args KServe puts before the object's."""
    if container.command:
        return server_of(container), ()
    if runtimes is None:
        return "vllm", ()
    resolution = resolve(obj, runtimes)
    if resolution.runtime is None:
        notes.append(shorten(f"{resolution.how}: could not check that args reach vLLM", 119))
        return "vllm", ()
    judgement = check_runtime(resolution.runtime)
    if judgement.note:
        notes.append(shorten(judgement.note, 119))
    return judgement.server, resolution.runtime.args or ()


def _result(
    obj: dict[str, object],
    container: Container,
    current: tuple[tuple[str, ...] | None, tuple[str, ...] | None],
    new: tuple[tuple[str, ...] | None, tuple[str, ...] | None],
    new_state: state.State | None,
) -> Verdict:
    ops: list[dict[str, object]] = []
    changed: list[str] = []
    for name, old_value, new_value in (("command", current[0], new[0]), ("args", current[1], new[1])):
        step = patch.set_value(
            f"{container.pointer}/{name}",
            None if old_value is None else list(old_value),
            None if new_value is None else list(new_value),
        )
        if step:
            ops.extend(step)
            changed.append(f"{container.where}.{name}")
    state_ops = patch.set_annotation(obj, STATE, None if new_state is None else state.dump(new_state))
    if state_ops:
        ops.extend(state_ops)
        changed.append(f"metadata.annotations[{STATE}]")
    return Verdict.patched(tuple(ops), tuple(changed))
