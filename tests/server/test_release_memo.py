"""The server finds the vLLM release of each distinct image string once, not per review, and keeps a bounded
number of them; the answers are those of the lookup it memoises."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from tests.helpers import isvc
from tests.server_harness import mutate_in_process, review_for
from webhook.server.app import RELEASE_MEMO_LENGTH, RELEASE_MEMO_SIZE, ServerState, create_app


def _answer(state: ServerState, obj: dict[str, Any]) -> dict[str, Any]:
    status, payload = asyncio.run(mutate_in_process(create_app(state), json.dumps(review_for(obj)).encode()))
    assert status == 200
    answer: dict[str, Any] = json.loads(payload)
    return answer["response"]  # type: ignore[no-any-return]


def _with_image(image: str, backend: str = "deepep_high_throughput") -> dict[str, Any]:
    obj = isvc(command=["vllm", "serve", "/mnt/models"], annotations={"ep.all2all-backend": backend})
    obj["spec"]["predictor"]["model"]["image"] = image
    return obj


def _lookups(state: ServerState) -> tuple[int, int]:
    info = state.release_of.cache_info()
    return info.hits, info.misses


def test_reviews_of_the_same_image_read_its_release_once_and_keep_its_answer() -> None:
    state = ServerState()
    old = _answer(state, _with_image("vllm/vllm-openai:v0.10.1.1"))
    again = _answer(state, _with_image("vllm/vllm-openai:v0.10.1.1"))
    assert _lookups(state) == (1, 1)
    # the remembered release still decides: 0.10.1.1 has no --all2all-backend, so the backend goes to the env
    assert again == old and "flags written for vLLM 0.10.1.1, from the image tag" in old["warnings"]
    assert b"VLLM_ALL2ALL_BACKEND" in base64.b64decode(old["patch"])
    newer = _answer(state, _with_image("vllm/vllm-openai:v0.33.0"))
    assert b"--all2all-backend" in base64.b64decode(newer["patch"]) and _lookups(state) == (1, 2)


def test_the_memo_keeps_at_most_its_size_of_distinct_images() -> None:
    state = ServerState()
    for i in range(RELEASE_MEMO_SIZE + 50):
        state.release_of(f"registry.example/vllm-{i}:v0.11.{i}")
    assert state.release_of.cache_info().currsize == RELEASE_MEMO_SIZE


def test_image_strings_longer_than_a_reference_are_read_but_not_kept() -> None:
    state = ServerState()
    long = "registry.example/" + "x" * RELEASE_MEMO_LENGTH + ":v0.11.2"
    assert state.release_of(long) == state.release_of(long)  # answered all the same
    assert state.release_of.cache_info().currsize == 0
