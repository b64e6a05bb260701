"""Hostile input to /mutate, driven in-process through the real ASGI app.

Hypothesis generates random bytes, random JSON and AdmissionReviews with one
field replaced by something odd; whatever arrives, the answer is a JSON 200
(a verdict), 400 or 413 — never a 5xx, never an exception, never a verdict
with code 500 (how the server reports a crash of its own) — and memory does
not grow with the number of reviews.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import tracemalloc
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.test_bounds import hostile_objects
from tests.helpers import isvc
from tests.server_harness import mutate_in_process, review_for
from webhook.server.app import ServerState, create_app
from webhook.server.logs import JsonFormatter

APP = create_app(ServerState())


def call(body: bytes, content_type: bytes | None = b"application/json") -> tuple[int, bytes]:
    return asyncio.run(mutate_in_process(APP, body, content_type))


def check(status: int, payload: bytes, uid: object = None) -> None:
    assert status in (200, 400, 413), status
    data = json.loads(payload)
    if status == 200:
        response = data["response"]
        assert isinstance(response["allowed"], bool)
        # an internal error is answered as a verdict with code 500 (the server stays up): that is a crash
        code = (response.get("status") or {}).get("code")
        assert code != 500, response["status"].get("message")
        if uid is not None:
            assert response["uid"] == uid
    else:
        assert isinstance(data["error"], str) and data["error"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([b"application/json", b"text/plain", None, b"application/json; charset=utf-8"]))
def test_random_bytes_get_a_4xx_or_a_verdict(body: bytes, content_type: bytes | None) -> None:
    check(*call(body, content_type))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_gets_a_4xx_or_a_verdict(value: Any) -> None:
    check(*call(json.dumps(value).encode()))


PATHS = [
    ("apiVersion",), ("kind",), ("request",), ("request", "uid"), ("request", "kind"), ("request", "kind", "group"),
    ("request", "kind", "kind"), ("request", "operation"), ("request", "namespace"), ("request", "dryRun"),
    ("request", "object"), ("request", "object", "metadata"), ("request", "object", "metadata", "annotations"),
    ("request", "object", "spec", "predictor", "model"), ("request", "object", "spec", "predictor", "model", "command"),
    ("request", "object", "spec", "predictor", "model", "args"),
    ("request", "object", "spec", "predictor", "model", "resources", "limits"),
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), json_values, st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]))
def test_reviews_with_one_odd_field_get_a_4xx_or_a_verdict(path: tuple[str, ...], value: Any, version: str) -> None:
    review = review_for(isvc(command=["bash", "-c", "vllm serve m -tp ${N}"]), api_version=version)
    target = review
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    status, payload = call(json.dumps(review).encode())
    check(status, payload, review["request"]["uid"] if status == 200 else None)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_objects())
def test_hostile_objects_annotations_and_scripts_get_a_verdict_never_code_500(obj: dict[str, Any]) -> None:
    # deep $(, many "$@", numbers of thousands of digits, deeply nested JSON: see tests/core/test_bounds.py
    review = review_for(obj)
    status, payload = call(json.dumps(review).encode())
    check(status, payload, review["request"]["uid"] if status == 200 else None)  # 400: a number orjson refuses


def distinct_body(i: int) -> bytes:
    """Review `i` of a stream in which no object repeats: list commands, scripts, denials and malformed bodies."""
    kind = i % 5
    if kind == 3:
        return b"{broken" + str(i).encode()
    if kind == 4:
        return b"x" * (5000 + i % 100)
    if kind == 0:
        obj = isvc(command=["vllm", "serve", f"m-{i}", "--max-model-len", str(1000 + i), "-tp", "8"])
    elif kind == 1:
        obj = isvc(command=["bash", "-c", f"GPU=$(nproc)\nvllm serve m-{i} \\\n  --port {i} \\\n  -tp $GPU"])
    else:
        obj = isvc(command=["vllm", "serve", f"m-{i}"], limits={"nvidia.com/gpu": "1"})
    obj["metadata"]["name"] = f"model-{i}"
    return json.dumps(review_for(obj, uid=f"uid-{i}")).encode()


def test_memory_does_not_grow_with_the_number_of_distinct_reviews() -> None:
    async def many(start: int, n: int) -> None:
        for i in range(start, start + n):
            status, _ = await mutate_in_process(APP, distinct_body(i), b"application/json")
            assert status in (200, 400)

    # log as in production (JSON lines to a stream), not into pytest's record-keeping capture
    logger = logging.getLogger("webhook")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    try:
        asyncio.run(many(0, 300))  # warm up: imports, interned strings, allocator pools
        handler.stream = io.StringIO()
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        asyncio.run(many(300, 3000))
        handler.stream = io.StringIO()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = True, logging.NOTSET
    assert grown < 256 * 1024, f"{grown} bytes retained after 3000 reviews"


def test_the_checker_fails_on_a_crash_reported_as_a_verdict(monkeypatch: Any) -> None:
    """A bug in the decision is answered as a 200 verdict with code 500; `check` must not accept it."""
    import pytest

    import webhook.server.app as app_module

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(app_module, "admit", broken)
    status, payload = call(json.dumps(review_for(isvc(command=["vllm", "serve", "/m"]))).encode())
    assert status == 200 and json.loads(payload)["response"]["status"]["code"] == 500
    with pytest.raises(AssertionError):
        check(status, payload)
