"""Which vLLM release a container runs, from its image (vLLM's own images, and KServe's huggingfaceserver,
which bundles a vLLM release of its own), and the container's own choice of all2all backend (its env).

Source: ../shared/vllm/README.md ("Which vLLM is in common images"), read from KServe's repository at its
release tags: kserve/huggingfaceserver v0.15.0 (`-gpu`) bundles vLLM 0.8.1, v0.15.1-2 0.8.5, v0.16.0 0.9.2,
v0.17.x 0.15.1, v0.18.x 0.19.0, v0.19.0 0.20.0, v0.20.0 0.24.0.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from webhook.core.gpus import VISIBLE_DEVICES_ENV
from webhook.core.workload import Launch
from webhook.vllm import images
from webhook.vllm.releases import ALL2ALL_ENV, DP_SIZE_ENV, Version

HUGGINGFACESERVER: tuple[tuple[str, Version], ...] = (
    ("0.15.0", (0, 8, 1)), ("0.15.1", (0, 8, 5)), ("0.15.2", (0, 8, 5)), ("0.16.0", (0, 9, 2)),
    ("0.17", (0, 15, 1)), ("0.18", (0, 19, 0)), ("0.19.0", (0, 20, 0)), ("0.20.0", (0, 24, 0)),
)
"""KServe release (or minor series) of kserve/huggingfaceserver, and the vLLM it bundles."""
STORAGE_URI_ENV = "STORAGE_URI"
"""The env that gives a custom InferenceService predictor container its model's storage URI (KServe v0.20
`constants.CustomSpecStorageUriEnvVarKey`, pkg/constants/constants.go)."""
WATCHED_ENV = frozenset({ALL2ALL_ENV, DP_SIZE_ENV, STORAGE_URI_ENV, *VISIBLE_DEVICES_ENV})
"""The env of a vLLM container the adapters read: the all2all backend, the data-parallel size vLLM falls back
to, the model's storage URI (custom predictors) and the visible GPUs."""
_TAG = re.compile(r"v?(\d+\.\d+(?:\.\d+)?)(?:-gpu)?")


ReleaseOf = Callable[[str], "Version | None"]
"""How an adapter finds the vLLM release of an image: `release_of`, or the server's memo of it
(`webhook.server.app.ServerState.release_of`), which reads each distinct image string once."""


def release_of(image: str) -> Version | None:
    """The vLLM release an image runs, or None when its reference does not say."""
    found = images.release_of(image)
    if found is not None:
        return found
    repository, tag = images.split(image)
    if repository != "kserve/huggingfaceserver":
        return None
    m = _TAG.fullmatch(tag)
    if m is None:
        return None
    release = m.group(1)
    for kserve, vllm in HUGGINGFACESERVER:
        if release == kserve or (kserve.count(".") == 1 and release.startswith(kserve + ".")):
            return vllm
    return None




def with_all2all_env(launch: Launch, env: dict[str, str | None]) -> Launch:
    """`launch` with the container's VLLM_ALL2ALL_BACKEND from `env` (see `gpus.watched_env`, with `WATCHED_ENV`):
    its literal value, or unknown when it is known only at run time."""
    if not env:
        return launch
    launch = launch._replace(env=tuple(env.items()))
    if ALL2ALL_ENV not in env:
        return launch
    value = env[ALL2ALL_ENV]
    return launch._replace(all2all_env=value, all2all_env_unknown=value is None)
