"""Which vLLM release an image of vLLM's own runs, from its reference.

Source: ../shared/vllm/README.md, "Which vLLM is in common images": `vllm/vllm-openai:vX.Y.Z` (also with
suffixes such as `-cu129`, `-cu130`, `-ubuntu2404`, `-x86_64`, `-aarch64`) and `vllm/vllm-openai-rocm:vX.Y.Z`
run X.Y.Z; Red Hat's `quay.io/modh/vllm:rhoai-2.25-cuda`, `rhoai-3.2-cuda`, `rhoai-3.3-cuda` run 0.10.1.1,
0.11.2 and 0.13.0 (their model cards). `latest`, `nightly` and digests carry no release.
"""

from __future__ import annotations

import re

from webhook.vllm.releases import Version, parse_version

_VLLM_REPOSITORIES = frozenset({"vllm/vllm-openai", "vllm/vllm-openai-rocm"})
_TAG = re.compile(r"v?(\d+\.\d+\.\d+(?:\.\d+)?)(?:-[A-Za-z0-9_.-]+)?")
RHOAI: dict[str, Version] = {
    "rhoai-2.25-cuda": (0, 10, 1, 1),
    "rhoai-3.2-cuda": (0, 11, 2),
    "rhoai-3.3-cuda": (0, 13, 0),
}
"""Tags of quay.io/modh/vllm and the vLLM each runs."""


def split(image: str) -> tuple[str, str]:
    """(repository without the registry `docker.io/` / `index.docker.io/` / `library/`, tag); a digest has no tag."""
    name = image.strip().partition("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    repository, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "")
    for registry in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if repository.startswith(registry):
            repository = repository[len(registry):]
    return repository, tag


def release_of(image: str) -> Version | None:
    """The vLLM release a vLLM image runs, or None when the reference does not say (or is not vLLM's).

    A mirror keeps the repository path (`registry.example:5000/vllm/vllm-openai:v0.11.2` runs 0.11.2)."""
    repository, tag = split(image)
    if repository in _VLLM_REPOSITORIES or repository.endswith(tuple("/" + r for r in _VLLM_REPOSITORIES)):
        m = _TAG.fullmatch(tag)
        return parse_version(m.group(1)) if m else None
    if repository == "quay.io/modh/vllm":
        return RHOAI.get(tag)
    return None
