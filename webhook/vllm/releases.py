"""vLLM's expert-parallel command line, release by release: facts as data, not branches.

Each `Change` says what a release changed; `profile(version)` folds every change up to that version into a
`Profile`, the command line that release accepts. Sources: the Python sources inside the official vLLM
wheels (`vllm/engine/arg_utils.py`, `vllm/config/parallel.py`, `vllm/envs.py`), as collected in
`../shared/vllm/README.md`; `tests/vllm/test_real_vllm.py` checks every profile against the real releases
0.10.1.1, 0.11.0, 0.11.2, 0.15.1, 0.24.0 and 0.33.0 (their own parsers' options and choices).

Profiles are computed once, when the module is imported, for every release that changes something;
a lookup is a binary search over them.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

Version = tuple[int, ...]
"""A release number as integers: 0.11.2 is (0, 11, 2)."""

ALL2ALL_ENV = "VLLM_ALL2ALL_BACKEND"
"""The env vLLM reads the all2all backend from, as `All2AllBy` says per release (`vllm/envs.py`)."""
DP_SIZE_ENV = "VLLM_DP_SIZE"
"""The env every release profiled reads the data-parallel size from whenever the flags give DP 1
(`ParallelConfig.__post_init__`, vllm/config/parallel.py: "fall back to env vars"; 0.11.0 and 0.33.0 checked by
the tests): a DP of 1 on the command line does not mean DP 1 while it is set."""

All2AllBy = Literal["env", "flag-else-env", "env-over-flag", "flag"]
"""How a release takes the all2all backend: the env `VLLM_ALL2ALL_BACKEND` only; the flag
`--all2all-backend`, the env only when the flag is absent; the flag, but a set env overrides it; the flag only
(the env is ignored)."""


class Profile(NamedTuple):
    """What one vLLM release accepts on its EP command line."""

    release: Version
    """The release this profile is for (the change at or below the version looked up)."""
    all2all_by: All2AllBy
    all2all_backends: frozenset[str]
    """Backend names the release accepts (flag choices, or values its env check accepts)."""
    short_ep: bool
    """`-ep` is `--enable-expert-parallel` (0.14.0)."""
    disable_flags: bool
    """Every `--enable-x` has a `--disable-x` (0.33.0)."""
    eplb_config: bool
    """`--eplb-config JSON` exists (0.10.2)."""
    eplb_keys: frozenset[str]
    """The keys `--eplb-config` knows (empty before it exists)."""
    eplb_unknown_keys_refused: bool
    """An unknown `--eplb-config` key stops vLLM at start-up (0.16.0); before, it is ignored."""
    eplb_choices: Mapping[str, frozenset[str]]
    """`--eplb-config` keys whose value is one of a few names (`EPLBPolicyOption`, `EPLBCommunicatorBackend`:
    `Literal`s in vllm/config/parallel.py; communicator may also be null)."""
    eplb_positive: bool
    """window_size, step_interval and log_balancedness_interval must be above 0 (`Field(gt=0)`: in 0.24.0, not in
    0.15.1; placed at 0.16.0, the releases between are not checked)."""
    eplb_async_default: bool
    """`use_async` when the config does not say (True in 0.24.0, False in 0.15.1; placed at 0.20.0)."""
    eplb_async_refused: frozenset[str]
    """Communicators that `EPLBConfig` refuses with async EPLB ("incompatible with async EPLB due to NCCL
    multi-stream conflicts": 0.24.0 and 0.33.0, `_validate_eplb_config`; placed at 0.20.0 with the key)."""
    external_lb_flag: bool
    """`--data-parallel-external-lb` / `-dpe` exists (0.11.1)."""
    serve_model_flag_moves: bool
    """`vllm serve` moves a `--model` into its model position, so a model given both ways is refused
    ("unrecognized arguments"): in 0.11.2 and later, not in 0.11.0 (0.11.1 not checked; placed at 0.11.2)."""
    dbo_backends: frozenset[str]
    """The all2all backends `--enable-dbo` (0.11.0) starts with on CUDA; empty before the flag exists. Any other
    backend fails vLLM's start-up assertion "Microbatching currently only supports ..." (`VllmConfig.__post_init__`,
    vllm/config/__init__.py in 0.11.0, vllm/config/vllm.py later; 0.33.0 on ROCm also takes allgather_reducescatter)."""


class Change(NamedTuple):
    """What one release changed, as `Profile` field values (only those it changed)."""

    release: Version
    changes: dict[str, object]


def _choices(**keys: set[str]) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({k: frozenset(v) for k, v in keys.items()})


_BASE = ("naive", "pplx", "deepep_high_throughput", "deepep_low_latency")
CHANGES: tuple[Change, ...] = (
    Change((0, 9, 1), {  # the env knows the DeepEP backends from 0.9.1
        "all2all_by": "env", "all2all_backends": frozenset(_BASE), "short_ep": False, "disable_flags": False,
        "eplb_config": False, "eplb_keys": frozenset(), "eplb_unknown_keys_refused": False,
        "eplb_choices": _choices(), "eplb_positive": False, "eplb_async_default": False, "eplb_async_refused": frozenset(),
        "external_lb_flag": False, "dbo_backends": frozenset(), "serve_model_flag_moves": False,
    }),
    Change((0, 10, 2), {
        "eplb_config": True,
        "eplb_keys": frozenset({"window_size", "step_interval", "num_redundant_experts", "log_balancedness"}),
    }),
    Change((0, 11, 0), {"all2all_backends": frozenset({*_BASE, "allgather_reducescatter", "flashinfer_all2allv"}),
                        "dbo_backends": frozenset({"deepep_low_latency", "deepep_high_throughput"})}),
    Change((0, 11, 1), {"all2all_by": "flag-else-env", "external_lb_flag": True}),
    Change((0, 11, 2), {"serve_model_flag_moves": True}),
    Change((0, 12, 0), {"eplb_keys": frozenset({"window_size", "step_interval", "num_redundant_experts",
                                                "log_balancedness", "use_async"})}),
    Change((0, 13, 0), {"eplb_keys": frozenset({"window_size", "step_interval", "num_redundant_experts",
                                                "log_balancedness", "use_async", "policy"}),
                        "eplb_choices": _choices(policy={"default"})}),
    Change((0, 14, 0), {"all2all_by": "env-over-flag", "short_ep": True,
                        "eplb_keys": frozenset({"window_size", "step_interval", "num_redundant_experts",
                                                "log_balancedness", "use_async", "policy",
                                                "log_balancedness_interval"})}),
    Change((0, 15, 0), {"all2all_backends": frozenset({*_BASE, "allgather_reducescatter", "flashinfer_all2allv",
                                                       "mori"})}),
    Change((0, 16, 0), {"all2all_by": "flag", "eplb_unknown_keys_refused": True, "eplb_positive": True}),
    Change((0, 18, 0), {"all2all_backends": frozenset({*_BASE, "allgather_reducescatter", "flashinfer_all2allv",
                                                       "mori", "nixl_ep", "flashinfer_nvlink_two_sided",
                                                       "flashinfer_nvlink_one_sided"})}),
    Change((0, 20, 0), {"eplb_keys": frozenset({"window_size", "step_interval", "num_redundant_experts",
                                                "log_balancedness", "use_async", "policy",
                                                "log_balancedness_interval", "communicator"}),
                        "eplb_choices": _choices(policy={"default"},
                                                 communicator={"torch_nccl", "torch_gloo", "nixl", "pynccl"}),
                        "eplb_async_default": True, "eplb_async_refused": frozenset({"torch_nccl", "pynccl"})}),
    Change((0, 23, 0), {"all2all_backends": frozenset({*_BASE, "allgather_reducescatter", "flashinfer_all2allv",
                                                       "mori_high_throughput", "mori_low_latency", "nixl_ep",
                                                       "flashinfer_nvlink_two_sided",
                                                       "flashinfer_nvlink_one_sided"})}),
    Change((0, 24, 0), {"all2all_backends": frozenset({*_BASE, "allgather_reducescatter", "flashinfer_all2allv",
                                                       "mori_high_throughput", "mori_low_latency", "nixl_ep",
                                                       "flashinfer_nvlink_two_sided", "flashinfer_nvlink_one_sided",
                                                       "deepep_v2"}),
                        "dbo_backends": frozenset({"deepep_low_latency", "deepep_high_throughput", "nixl_ep"})}),
    Change((0, 31, 0), {"all2all_backends": frozenset({*_BASE, "allgather_reducescatter", "flashinfer_all2allv",
                                                       "mori_high_throughput", "mori_low_latency", "nixl_ep",
                                                       "flashinfer_nvlink_two_sided", "flashinfer_nvlink_one_sided",
                                                       "deepep_v2", "moonep"})}),
    Change((0, 32, 0), {"eplb_keys": frozenset({"window_size", "step_interval", "num_redundant_experts",
                                                "log_balancedness", "use_async", "policy",
                                                "log_balancedness_interval", "communicator",
                                                "enable_migration_batching"})}),
    Change((0, 33, 0), {"disable_flags": True,  # torch_xccl: in 0.33.0, not in 0.24.0 (the releases between unchecked)
                        "eplb_choices": _choices(policy={"default"}, communicator={
                            "torch_nccl", "torch_gloo", "torch_xccl", "nixl", "pynccl"})}),
)
"""Every release that changed the EP command line since 0.9.1, oldest first."""


EPLB_TYPES: dict[str, type] = {
    "window_size": int, "step_interval": int, "num_redundant_experts": int, "log_balancedness": bool,
    "log_balancedness_interval": int, "use_async": bool, "enable_migration_batching": bool,
}
"""The JSON type of each number and switch of `--eplb-config` (`EPLBConfig`'s fields, vllm/config/parallel.py,
0.11.0-0.33.0); num_redundant_experts is at least 0 (`Field(ge=0)`, 0.11.2 and later)."""
EPLB_POSITIVE = ("window_size", "step_interval", "log_balancedness_interval")
"""The keys `Profile.eplb_positive` is about."""


def _fold() -> tuple[tuple[Version, ...], tuple[Profile, ...]]:
    fields: dict[str, object] = {}
    releases, profiles = [], []
    for change in CHANGES:
        fields.update(change.changes)
        releases.append(change.release)
        profiles.append(Profile(change.release, **fields))  # type: ignore[arg-type]
    return tuple(releases), tuple(profiles)


_RELEASES, _PROFILES = _fold()
OLDEST, NEWEST = _RELEASES[0], (0, 33, 0)
"""The oldest release profiled, and the newest release known (the default when no release is known)."""
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> Version | None:
    """`0.11.2`, `v0.10.1.1` as integers; None for anything else."""
    m = _VERSION.fullmatch(text.strip())
    return None if m is None else tuple(int(g) for g in m.groups() if g is not None)


def show(version: Version) -> str:
    """A release number as vLLM writes it: (0, 11, 2) is `0.11.2`."""
    return ".".join(map(str, version))


def profile(version: Version) -> Profile | None:
    """The command line of `version`: the profile of the newest change at or below it; None before OLDEST."""
    i = bisect_right(_RELEASES, version)
    return _PROFILES[i - 1] if i else None
