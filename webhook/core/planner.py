"""The pure planner: a workload's roles and the user's request in, the new field values out.

It knows layouts, not kinds: a role is configured from its own GPU count,
either as one pod running the whole data-parallel group (flags in its
launches, and in `parallelism` where the kind has one) or as a leader and
workers whose flags the kind's preset renders from `parallelism` (a
"multi" layout: only the parallelism object changes, and hand-written flags
in the launches that would contradict it are corrected).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

from webhook.vllm import flags
from webhook.vllm.argv import DesiredFlag
from webhook.vllm.command import flag_value, rewrite, switched_on
from webhook.base.errors import Denied, NotApplicable
from webhook.core.gpus import Gpus, count_gpus, on_amd
from webhook.base.jsonvalues import strings_or_none
from webhook.vllm.launch import ListLaunch, Server
from webhook.vllm.launch import read as launch_read
from webhook.base.text import shorten
from webhook.core.annotations import (
    ALL2ALL_BACKEND, EPLB, EPLB_CONFIG, NODES, TENSOR_PARALLEL_SIZE, VLLM_VERSION, EpRequest,
)
from webhook.vllm import releases
from webhook.core import all2allenv, shm
from webhook.vllm.releases import ALL2ALL_ENV, DP_SIZE_ENV, Version
from webhook.core.options import Options
from webhook.core.workload import Field, Launch, Role, Workload

# vLLM 0.10.0 through 0.33 (vllm/engine/arg_utils.py, vllm/v1/engine/utils.py; 0.9.x did not infer it): a rank started with
# --data-parallel-size-local and --data-parallel-start-rank but without --headless is put in hybrid
# load-balancing mode, and the rank-0 engine then refuses remote engines that run --headless
# ("Remote engine N must not use --headless in external or hybrid dp lb mode"). KServe's
# data-parallel preset starts the leader exactly so and its workers with --headless.
HYBRID_LB_NOTE = (
    "vLLM 0.10.0-0.33 refuse KServe's multi-node preset: leader --data-parallel-start-rank 0 = hybrid LB, "
    "workers --headless"
)


class Planned(NamedTuple):
    """New values by pointer, warnings describing the edit, and notes about the decision."""

    values: dict[str, object]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]


def extra_desired_flags(request: EpRequest) -> list[DesiredFlag]:
    """all2all and EPLB: the same on every layout."""
    wants = []
    if request.all2all_backend is not None:
        wants.append(DesiredFlag(flags.ALL2ALL, request.all2all_backend))
    if request.eplb is True:
        wants.append(DesiredFlag(flags.ENABLE_EPLB, negation=flags.DISABLE_EPLB))
    elif request.eplb is False:
        wants.append(DesiredFlag(flags.ENABLE_EPLB, present=False))
    if request.eplb_config is not None:
        wants.append(DesiredFlag(flags.EPLB_CONFIG, request.eplb_config))
    return wants


def desired_flags(request: EpRequest, data_parallel_size: int, server: Server = "vllm") -> list[DesiredFlag]:
    """The flags that make a single-pod server run EP with the requested layout.

    huggingfaceserver sets the tensor parallel size to the GPU count itself, so
    there EP spans the TP group: only EP on, and no data-parallel size.
    """
    if server == "huggingfaceserver":
        wants = [DesiredFlag(flags.ENABLE_EP, negation=flags.DISABLE_EP), DesiredFlag(flags.DP, present=False)]
    else:
        wants = [
            DesiredFlag(flags.ENABLE_EP, negation=flags.DISABLE_EP),
            DesiredFlag(flags.TP, str(request.tensor_parallel_size)),
            DesiredFlag(flags.DP, str(data_parallel_size)),
        ]
    return wants + extra_desired_flags(request)


def plan(
    workload: Workload, values: Mapping[str, object], request: EpRequest, options: Options, reject: bool
) -> Planned:
    """The values every owned field should hold for EP, computed from `values` (current or original)."""
    out = dict(values)
    warnings: list[str] = []
    notes: list[str] = []
    for role in workload.roles:
        ranks = _plan_role(role, out, request, options, reject, warnings, notes)
        if role.shm:
            shm.plan(role.shm, out, ranks, options, warnings)
    return Planned(out, tuple(warnings), tuple(notes))


def _plan_role(
    role: Role,
    out: dict[str, object],
    request: EpRequest,
    options: Options,
    reject: bool,
    warnings: list[str],
    notes: list[str],
) -> int:
    """Plan one role; returns the ranks (TP x DP) its pods run, for /dev/shm (`shm`)."""
    if role.refusal:
        raise NotApplicable(role.refusal)
    gpus = count_gpus(role.gpus, options.gpu_resources, options.gpu_device_classes)
    if role.layout == "multi":
        worker = role.worker_gpus or Gpus("the worker")
        worker_gpus = count_gpus(worker, options.gpu_resources, options.gpu_device_classes)
        if worker_gpus != gpus:
            raise Denied(
                f"{role.gpus.where} gets {gpus} GPUs but {worker.where} gets {worker_gpus}; every pod "
                f"of a data-parallel group needs the same GPUs: make them equal"
            )
    runtime_args = False
    for launch in role.launches:
        if launch.refusal:
            raise NotApplicable(launch.refusal)
        notes.extend(launch.notes)
        runtime_args = runtime_args or bool(launch.runtime_args)
    request = _check_release(request, role, options, notes)
    if runtime_args:
        _check_model_given_twice(request, role, options)
    if request.all2all_backend in flags.CUDA_ONLY_ALL2ALL_BACKENDS and on_amd(role.gpus):
        raise Denied(
            f"all2all backend {request.all2all_backend} runs CUDA-only kernels, which the stock ROCm images lack, "
            f"but {role.gpus.where} gets AMD GPUs: set {ALL2ALL_BACKEND} to allgather_reducescatter or mori_*"
        )
    long_ep = _without_short_ep(request, role, options)
    in_env = request.all2all_backend is not None and _all2all_in_env(request, role, options, out, warnings)
    server = role.launches[0].server if role.launches else "vllm"
    if server == "huggingfaceserver":
        wants = _huggingfaceserver_wants(role.launches[0], out, request, gpus)
        notes.append(f"huggingfaceserver sets tensor parallel size to the GPU count ({gpus}): EP runs as TP {gpus}, DP 1")
        _check_launches(role, out, request, options, 1)
        _rewrite_launches(role.launches, out, wants, reject, True, warnings, long_ep, in_env)
        return gpus
    tp = request.tensor_parallel_size
    if gpus % tp:
        raise Denied(
            f"the pod gets {gpus} GPUs, which tensor parallel size {tp} does not divide; "
            f"set ep.tensor-parallel-size to a divisor of {gpus} or change the GPU limit"
        )
    local = gpus // tp
    if role.layout == "multi":
        return _plan_multi_node(role, out, request, options, reject, tp, local, warnings, notes, long_ep, in_env)
    _check_maximum(local, f"{gpus} GPUs / TP {tp}", options)
    parallelism = role.parallelism
    evaluated = [launch for launch in role.launches if launch.form == "eval"]
    if parallelism is None or not evaluated:
        # the launch carries the whole layout (an InferenceService, or a role with its own command)
        _check_launches(role, out, request, options, local)
        _rewrite_launches(role.launches, out, desired_flags(request, local), reject, True, warnings, long_ep, in_env)
        return tp * local
    _set_parallelism(parallelism, out, {"tensor": tp, "expert": True, "data": local, "dataLocal": local},
                     reject, warnings)
    # KServe's single-node preset renders only --tensor-parallel-size: EP and DP go to the args
    wants = [
        DesiredFlag(flags.ENABLE_EP, negation=flags.DISABLE_EP),
        DesiredFlag(flags.TP, str(tp), add=False),
        DesiredFlag(flags.DP, str(local)),
        *extra_desired_flags(request),
    ]
    _check_launches(role, out, request, options, local)
    _rewrite_launches(role.launches, out, wants, reject, True, warnings, long_ep, in_env)
    return tp * local


def _check_launches(role: Role, out: Mapping[str, object], request: EpRequest, options: Options, dp: int) -> None:
    """What vLLM would refuse (or run otherwise) in the launches once the webhook's flags are in, read before
    they are (the webhook never writes these): a data-parallel size in the env where the flags give DP `dp` = 1,
    and a hand-written dual-batch overlap without a backend that supports it."""
    for launch in role.launches:
        env = dict(launch.env) if launch.env else {}
        if dp == 1 and DP_SIZE_ENV in env and env[DP_SIZE_ENV] != "1":
            shown = "from a source read at run time" if env[DP_SIZE_ENV] is None else f"={env[DP_SIZE_ENV]}"
            raise Denied(
                f"{launch.where} sets env {DP_SIZE_ENV}{shown}, which vLLM reads as the data-parallel size "
                f"when the flags give DP 1 (as here): remove {DP_SIZE_ENV}"
            )
        raw_command, raw_args = out.get(launch.command.pointer), out.get(launch.args.pointer)
        # every spelling of --enable-dbo (a unique prefix is at least --enable-db, underscores allowed) has "db";
        # the adapters checked that command and args are lists of strings
        words = (*launch.runtime_args, *(raw_command if isinstance(raw_command, list) else ()),
                 *(raw_args if isinstance(raw_args, list) else ()))
        if "db" not in "\n".join(words):
            continue
        command, args = strings_or_none(raw_command), strings_or_none(raw_args)
        try:
            dbo = switched_on(launch.runtime_args, command, args, flags.ENABLE_DBO, flags.DISABLE_DBO)
        except Denied:
            continue  # a launch the webhook cannot read: the rewrite denies it, naming the container
        if not dbo:
            continue
        version, how = release_for(request, role, options)
        found = releases.profile(version)
        supported = found.dbo_backends if found is not None else frozenset()
        backend = request.all2all_backend or flag_value(launch.runtime_args, command, args, flags.ALL2ALL) \
            or launch.all2all_env or "the default"
        if backend not in supported:
            need = ", ".join(sorted(supported)) or f"none: vLLM {releases.show(version)} has no {flags.ENABLE_DBO}"
            raise Denied(
                f"{launch.where} runs {flags.ENABLE_DBO}, which vLLM {releases.show(version)} ({how}) refuses at "
                f"start-up with all2all backend {backend} (it needs one of: {need}): set {ALL2ALL_BACKEND} "
                f"to one of those, or remove {flags.ENABLE_DBO}"
            )


def _plan_multi_node(
    role: Role,
    out: dict[str, object],
    request: EpRequest,
    options: Options,
    reject: bool,
    tp: int,
    local: int,
    warnings: list[str],
    notes: list[str],
    long_ep: bool,
    in_env: bool,
) -> int:
    assert role.parallelism is not None
    current = out.get(role.parallelism.pointer)
    current = current if isinstance(current, dict) else {}
    if current.get("pipeline") is not None:
        raise NotApplicable(
            f"{role.parallelism.path}.pipeline is set: KServe runs pipeline parallelism, not data parallelism, "
            f"across these nodes, and expert parallelism needs data parallelism; remove pipeline or ep.enabled"
        )
    nodes = _nodes(request, current, role.parallelism.path)
    data = local * nodes
    _check_maximum(data, f"{nodes} nodes x {local} per node", options)
    for launch in role.launches:
        if launch.form != "eval":
            raise NotApplicable(
                f"{launch.where} has its own command, which replaces KServe's multi-node data-parallel preset; "
                f"remove the command so that the preset renders the EP flags from parallelism"
            )
    _set_parallelism(role.parallelism, out, {"expert": True, "tensor": tp, "data": data, "dataLocal": local},
                     reject, warnings)
    # the preset renders EP, TP, DP and DP-local; hand-written copies in args come later and would win
    wants = [
        DesiredFlag(flags.ENABLE_EP, negation=flags.DISABLE_EP, add=False),
        DesiredFlag(flags.TP, str(tp), add=False),
        DesiredFlag(flags.DP, str(data), add=False),
        DesiredFlag(flags.DP_LOCAL, str(local), add=False),
        *extra_desired_flags(request),
    ]
    _rewrite_launches(role.launches, out, wants, reject, False, warnings, long_ep, in_env)
    notes.append(HYBRID_LB_NOTE)
    return tp * data


def _known_release(request: EpRequest, role: Role, options: Options) -> tuple[Version, str] | None:
    """The vLLM release the role's pods run, if anything says, and what says it (annotation, image, policy).

    In this order: the annotation ep.vllm-version; the image of the role's first launch that names a release
    (the container's, else its runtime's); the policy's vllmVersion. An upgrade target
    (`Options.vllm_version_overrides`) comes before all of them.
    """
    if options.vllm_version_overrides and options.vllm_version is not None:
        return options.vllm_version, "target"
    if request.vllm_version is not None:
        return request.vllm_version, "annotation"
    for launch in role.launches:
        if launch.image_release is not None:
            return launch.image_release, "image"
    if options.vllm_version is not None:
        return options.vllm_version, "policy"
    return None


def release_for(request: EpRequest, role: Role, options: Options) -> tuple[Version, str]:
    """The vLLM release the role's pods run and how it is known, for messages; the newest known when
    nothing says (`_known_release`)."""
    known = _known_release(request, role, options)
    if known is None:
        return releases.NEWEST, f"assumed: set {VLLM_VERSION} or a versioned image"
    version, source = known
    if source == "annotation":
        return version, f"from annotation {VLLM_VERSION}"
    if source == "image":
        return version, "from the image tag"
    if source == "target":
        return version, "the upgrade target"
    return version, f"from policy rule {options.rule!r}"


def _without_short_ep(request: EpRequest, role: Role, options: Options) -> bool:
    """Whether the role's release has no `-ep` (before vLLM 0.14); False when no release is known (the newest has it)."""
    launches = role.launches
    if request.vllm_version is None and options.vllm_version is None and len(launches) == 1 \
            and launches[0].image_release is None:
        return False  # the common case, on every review: nothing names a release, and the newest has -ep
    known = _known_release(request, role, options)
    if known is None:
        return False
    found = releases.profile(known[0])
    return found is None or not found.short_ep


def _check_model_given_twice(request: EpRequest, role: Role, options: Options) -> None:
    """Deny a `vllm serve MODEL` command on a runtime whose args pass `--model` too (KServe's kserve-vllmserver
    passes `--model=/mnt/models`; the runtime's args follow the object's command, the object's args follow
    theirs): vLLM 0.11.2 and later move `--model` into the model position and refuse the extra word
    (`Profile.serve_model_flag_moves`). Read as a model: the word right after `serve` in the command, and the
    first of the object's args after a command that ends at `serve` when the runtime's last arg carries its value
    (`--x=V`); a model after other flags, or in a script, is not looked for. Cheap when no runtime passes
    `--model`."""
    for launch in role.launches:
        runtime_args = launch.runtime_args
        if not runtime_args or not any(a == "--model" or a.startswith("--model=") for a in runtime_args):
            continue
        command, args = launch.command.value, launch.args.value
        found = launch_read(list(command)) if isinstance(command, (list, tuple)) and len(command) > 1 else None
        if not isinstance(found, ListLaunch) or found.call is None or found.words[found.call.start - 1].literal != "serve":
            continue
        if found.call.start < len(found.words):
            model, where = found.words[found.call.start].literal, f"{launch.where}.command"
        elif isinstance(args, (list, tuple)) and args and runtime_args[-1].startswith("--") and "=" in runtime_args[-1]:
            model, where = args[0], f"{launch.where}.args"
        else:
            continue
        if not isinstance(model, str) or model.startswith("-"):
            continue
        version, how = release_for(request, role, options)
        profile = releases.profile(version)
        if profile is not None and profile.serve_model_flag_moves:
            raise Denied(
                f"{where} names the model {json.dumps(shorten(model, 40))} and the runtime's args pass --model "
                f"too, which vLLM {releases.show(version)} ({how}) refuses (\"unrecognized arguments\"): remove "
                f"the model from {where.rpartition('.')[2]}"
            )


def _check_eplb_values(config: dict[str, object], found: releases.Profile, release: str) -> None:
    """Deny `--eplb-config` values that the release's `EPLBConfig` refuses when vLLM starts (Denied, naming
    `release` and the fix): a number or switch vLLM cannot read as one (`_eplb_value`), a name outside the
    release's choices, a size that must be positive, a negative count, a balancedness log every 0 steps
    (`_validate_eplb_config`, from 0.14.0 with its key), and a communicator that async EPLB (the release's default
    unless `use_async` is false) refuses. Keys the release does not know are checked by the caller; the values of
    known ones are read as the release reads them, never compared or hashed as they came (a list is no name)."""
    read: dict[str, object] = {}
    for key, value in config.items():
        if key not in found.eplb_keys:
            continue
        kind = releases.EPLB_TYPES.get(key)
        if kind is not None:
            number = read[key] = _eplb_value(key, value, kind, release)
            positive = found.eplb_positive and key in releases.EPLB_POSITIVE
            if kind is int and (number < 0 or (positive and number == 0)):
                raise Denied(f"{EPLB_CONFIG} {key} is {number}; {release} needs it {'above 0' if positive else '0 or more'}")
        choices = found.eplb_choices.get(key)
        if choices is not None and not (value is None and key == "communicator") \
                and not (isinstance(value, str) and value in choices):
            raise Denied(f"{EPLB_CONFIG} {key} is {json.dumps(value)[:40]}; {release} accepts: "
                         f"{', '.join(sorted(choices))}" + (" or null" if key == "communicator" else ""))
    if read.get("log_balancedness") is True and read.get("log_balancedness_interval", 1) == 0:
        raise Denied(f"{EPLB_CONFIG} log_balancedness_interval must be above 0 with log_balancedness ({release})")
    use_async = read.get("use_async", found.eplb_async_default)
    communicator = config.get("communicator") if "communicator" in found.eplb_keys else None
    if use_async and isinstance(communicator, str) and communicator in found.eplb_async_refused:
        raise Denied(
            f"{EPLB_CONFIG} communicator {communicator} does not work with async EPLB, which {release} "
            f"{'is asked for' if 'use_async' in read else 'uses by default'} (NCCL multi-stream conflicts): "
            f"use torch_gloo or nixl, leave communicator out, or set use_async to false"
        )


def _eplb_value(key: str, value: object, kind: type, release: str) -> int | bool:
    """A number or switch of `--eplb-config` as vLLM's pydantic `EPLBConfig` reads it (lax mode): a whole number
    from an int, a bool or a float without a fraction; a switch from true/false or 0/1. Denied otherwise,
    strings included, which pydantic would convert but the webhook asks to write as JSON numbers and switches."""
    if kind is int:
        if isinstance(value, int):  # bool too: pydantic reads true as 1
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise Denied(f"{EPLB_CONFIG} {key} is {json.dumps(value)[:40]}; {release} takes a whole number there: "
                     f"write it as a JSON number (1000, not \"1000\")")
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise Denied(f"{EPLB_CONFIG} {key} is {json.dumps(value)[:40]}; {release} takes true or false there")


def _check_release(request: EpRequest, role: Role, options: Options, notes: list[str]) -> EpRequest:
    """Refuse what the role's vLLM release would refuse at start-up; note the release when it matters.

    Returns the request to plan with: a backend chosen only through the container's VLLM_ALL2ALL_BACKEND
    becomes the flag on releases that ignore the env (0.16.0 and later). Where the release reads the env, the
    planner writes the asked backend there (`all2allenv`).
    """
    env_backends: set[str] = set()
    env_unknown = False
    for launch in role.launches:
        if launch.all2all_env is not None:
            env_backends.add(launch.all2all_env)
        env_unknown = env_unknown or launch.all2all_env_unknown
    if request.all2all_backend is None and request.eplb_config is None and not env_backends and not env_unknown:
        return request  # the EP, TP and DP flags are the same on every release profiled
    version, how = release_for(request, role, options)
    shown = releases.show(version)
    found = releases.profile(version)
    if found is None:
        raise Denied(
            f"vLLM {shown} ({how}) predates the expert-parallel flags the webhook writes (vLLM "
            f"{releases.show(releases.OLDEST)} or later); use a newer vLLM or set {VLLM_VERSION}"
        )
    if request.all2all_backend is None and len(env_backends) == 1 and found.all2all_by == "flag":
        chosen = next(iter(env_backends))
        notes.append(f"vLLM {shown} ignores env {ALL2ALL_ENV}: wrote it as --all2all-backend {chosen}")
        request = request._replace(all2all_backend=chosen)
    if request.all2all_backend is not None:
        backend = request.all2all_backend
        if backend not in found.all2all_backends:
            raise Denied(
                f"vLLM {shown} ({how}) does not accept all2all backend {backend}; it accepts: "
                f"{', '.join(sorted(found.all2all_backends))}"
            )
    if request.eplb_config is not None:
        config = json.loads(request.eplb_config)
        if not found.eplb_config:
            raise Denied(
                f"vLLM {shown} ({how}) has no --eplb-config (vLLM 0.10.2 added it); remove {EPLB_CONFIG} "
                f"or use a newer vLLM"
            )
        unknown = sorted(set(config) - found.eplb_keys)
        if unknown and found.eplb_unknown_keys_refused:
            raise Denied(
                f"vLLM {shown} ({how}) refuses unknown {EPLB_CONFIG} keys {', '.join(unknown)}; it knows: "
                f"{', '.join(sorted(found.eplb_keys))}"
            )
        if unknown:
            notes.append(f"vLLM {shown} ignores {EPLB_CONFIG} keys it does not know: {', '.join(unknown)}")
        _check_eplb_values(config, found, f"vLLM {shown} ({how})")
        redundant = config.get("num_redundant_experts")
        if isinstance(redundant, int) and redundant > 0 and request.eplb is not True:
            raise Denied(
                f"{EPLB_CONFIG} sets num_redundant_experts, which vLLM refuses without EPLB "
                f"(\"Either enable EPLB or unset num_redundant_experts\"): set {EPLB}: \"true\" or remove it"
            )
    if request.all2all_backend is not None or request.eplb_config is not None:
        notes.append(f"flags written for vLLM {shown}, {how}")
    return request


def _all2all_in_env(request: EpRequest, role: Role, options: Options, out: dict[str, object],
                    warnings: list[str]) -> bool:
    """Write the asked all2all backend into the role's container env where its release reads it from there
    (`all2allenv`); True when the release has no `--all2all-backend` flag (before 0.11.1), so none is written."""
    assert request.all2all_backend is not None
    version, how = release_for(request, role, options)
    found = releases.profile(version)
    if found is None:
        return False  # `_check_release` denied it
    all2allenv.plan(role.launches, out, request.all2all_backend, found.all2all_by, releases.show(version), how,
                    warnings)
    return found.all2all_by == "env"


def _nodes(request: EpRequest, parallelism: Mapping[str, object], label: str) -> int:
    if request.nodes is not None:
        return request.nodes
    data, data_local = parallelism.get("data"), parallelism.get("dataLocal")
    if isinstance(data, int) and isinstance(data_local, int) and data_local > 0 and data % data_local == 0:
        return max(data // data_local, 1)
    raise NotApplicable(
        f"a multi-node role needs its node count: set annotation {NODES} (e.g. \"2\"), or {label}.data and "
        f"dataLocal (nodes = data / dataLocal)"
    )


def _check_maximum(dp: int, how: str, options: Options) -> None:
    if options.max_data_parallel_size is not None and dp > options.max_data_parallel_size:
        raise Denied(
            f"data parallel size {dp} ({how}) exceeds the policy's maximum of "
            f"{options.max_data_parallel_size}; request fewer GPUs or a larger ep.tensor-parallel-size"
        )


def _set_parallelism(
    field: Field, out: dict[str, object], wanted: Mapping[str, object], reject: bool, warnings: list[str]
) -> None:
    current = out.get(field.pointer)
    base = dict(current) if isinstance(current, dict) else {}
    differing = {k: v for k, v in wanted.items() if base.get(k) != v}
    if not differing:
        return
    if reject:
        conflicts = [f"{k}: {_show(base[k])}" for k in differing if k in base]
        if conflicts:
            raise Denied(
                f"{field.path} sets {', '.join(conflicts)}, which conflicts with the expert-parallel layout the "
                f"webhook manages; the policy says onConflict: reject, so remove those fields and let the "
                f"webhook set them"
            )
    base.update(differing)
    out[field.pointer] = base
    warnings.append(f"set {field.path}: " + " ".join(f"{k}={_show(v)}" for k, v in differing.items()))


def _show(value: object) -> str:
    return "true" if value is True else "false" if value is False else str(value)


def _huggingfaceserver_wants(launch: Launch, values: Mapping[str, object], request: EpRequest, gpus: int) -> list[DesiredFlag]:
    """huggingfaceserver: TP is the GPU count whatever the flags say; the vLLM backend must be in use."""
    if request.tensor_parallel_asked and request.tensor_parallel_size != gpus:
        raise Denied(
            f"{TENSOR_PARALLEL_SIZE} is {request.tensor_parallel_size}, but huggingfaceserver always uses tensor "
            f"parallel size = GPU count ({gpus}); remove the annotation, or run vLLM itself (runtime "
            f"kserve-vllmserver, modelFormat vLLM) for a TP x DP layout"
        )
    command, args = values.get(launch.command.pointer), values.get(launch.args.pointer)
    backend = flag_value(
        launch.runtime_args,
        command if isinstance(command, list) else None,
        args if isinstance(args, list) else None,
        "--backend",
    )
    if backend is not None and backend not in ("vllm", "auto"):
        raise Denied(
            f"huggingfaceserver runs with --backend={backend}, which is not vLLM, so expert parallelism cannot "
            f"apply; use --backend=vllm (or drop --backend) or remove the ep.enabled annotation"
        )
    return desired_flags(request, 1, "huggingfaceserver")


def _rewrite_launches(
    launches: tuple[Launch, ...],
    out: dict[str, object],
    wants: list[DesiredFlag],
    reject: bool,
    single_node: bool,
    warnings: list[str],
    long_ep: bool = False,
    all2all_in_env: bool = False,
) -> None:
    """Rewrite each launch's command and args to `wants` into `out`. `long_ep`: the release has no `-ep`;
    `all2all_in_env`: it has no `--all2all-backend` (the backend went into the env): a written one goes."""
    if long_ep:
        wants = [w._replace(long_only=True) if w.name == flags.ENABLE_EP else w for w in wants]
    if all2all_in_env:
        wants = [w._replace(present=False, value=None) if w.name == flags.ALL2ALL else w for w in wants]
    for launch in launches:
        result = rewrite(
            launch, strings_or_none(out.get(launch.command.pointer)), strings_or_none(out.get(launch.args.pointer)),
            wants, reject, single_node,
        )
        out[launch.command.pointer] = None if result.command is None else list(result.command)
        out[launch.args.pointer] = None if result.args is None else list(result.args)
        warnings.extend(result.warnings)
