"""What an adapter may read besides the object: the cluster objects that decide how it runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from webhook.core.dra import Templates
from webhook.kserve.images import ReleaseOf, release_of
from webhook.kserve.selection import Runtimes


class NamespaceView(NamedTuple):
    """The objects of one namespace (and the cluster) that decide how an object's pods run.

    `runtimes`: the ServingRuntimes KServe could choose from (None: unknown,
    the runtime is not checked); `claim_templates`: the namespace's
    ResourceClaimTemplates by name (None: unknown, so GPUs claimed through
    DRA cannot be counted and such an object is denied saying so); `llm_configs`
    the namespace's own LLMInferenceServiceConfigs; `release_of`: how the vLLM release of an image is found.
    """

    runtimes: Runtimes | None = None
    claim_templates: Templates | None = None
    llm_configs: Mapping[str, Mapping[str, object]] | None = None
    """The LLMInferenceServiceConfigs of the object's namespace by name (None: unknown, so presets named by
    `baseRefs` cannot be read). Those of KServe's own namespace are the platform's and are not listed."""
    release_of: ReleaseOf = release_of
    """`images.release_of`, or a memo of it that the caller keeps (the server reads each image string once)."""


UNKNOWN = NamespaceView()
"""Nothing known besides the object: no runtimes, templates or configs; releases read from each image."""
