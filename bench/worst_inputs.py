"""The worst inputs found for one `mutate` call: CPU time and peak memory against 50 ms and 32 MiB.

    python bench/worst_inputs.py [--repeat 5]

Each case is an object a client can send in one review under the 3 MiB body
limit: the hostile inputs of issue 20 (deep `$(`, many `"$@"` times many
items, a 1 MiB script, numbers of thousands of digits, deeply nested JSON,
a body near 3 MiB) and, for every limit, the costliest input just under it
(those are the ones the webhook still reads in full). CPU is the best of
`--repeat` runs of `time.process_time` around one call; memory is the peak
that tracemalloc sees during one more call (Python allocations, on top of the
object itself, which the server holds anyway). The last cases measure the
server's own decode of a review before `mutate`: CPU, and the growth of the
resident set in a fresh process (tracemalloc would count the working pool
orjson reserves, about 12 times the body, most of which is never touched).

The targets are the issue's: no input up to the body limit costs more than
50 ms of CPU or 32 MiB of memory. The figures vary with the machine; the
ratio to the target is what to watch.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import isvc  # noqa: E402
from tests.server_harness import review_for  # noqa: E402
from webhook.admission.kinds import mutate  # noqa: E402
from webhook.admission.review import MAX_BODY, MAX_VALUES, BadReview, decode  # noqa: E402
from webhook.core.annotations import MAX_EPLB_CONFIG_DEPTH, MAX_EPLB_CONFIG_LENGTH, UNDO_RECORD  # noqa: E402
from webhook.core.gpus import MAX_QUANTITY_LENGTH  # noqa: E402
from webhook.vllm.launch import MAX_LAUNCH_ARGUMENTS  # noqa: E402
from webhook.vllm.shell import MAX_NESTING, MAX_SCRIPT_LENGTH, MAX_SCRIPT_WORDS  # noqa: E402

CPU_TARGET_MS = 50.0
MEMORY_TARGET_MIB = 32.0
VLLM = ["vllm", "serve", "/mnt/models"]
ORDINARY_LINE = "echo hello world this is an ordinary line\n"


def script(text: str, *after: str) -> dict[str, Any]:
    return isvc(command=["bash", "-c", text, *after])


def words_script() -> str:
    """The most words the script limit lets through, as short as words get, ending in a vLLM line."""
    launch = "exec vllm serve /mnt/models --max-model-len 4096\n"
    return "echo " + "a " * (MAX_SCRIPT_WORDS - 12) + "\n" + launch


def llmisvc_with_scripts(text: str) -> dict[str, Any]:
    """An LLMInferenceService whose two single-node roles (decode and prefill) each run the script `text`."""
    container = {"name": "main", "command": ["bash", "-c", text], "resources": {"limits": {"nvidia.com/gpu": "8"}}}
    return {
        "apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
        "metadata": {"name": "big", "namespace": "llm", "annotations": {"ep.enabled": "true"}},
        "spec": {"model": {"uri": "hf://x/y"}, "template": {"containers": [copy.deepcopy(container)]},
                 "prefill": {"template": {"containers": [copy.deepcopy(container)]}}},
    }


def ordinary_script_under_limits() -> str:
    """The longest script of ordinary lines under both the length and the word limit."""
    per_line = len(ORDINARY_LINE.split())
    lines = min((MAX_SCRIPT_LENGTH - 30) // len(ORDINARY_LINE), (MAX_SCRIPT_WORDS - 10) // per_line)
    return ORDINARY_LINE * lines + "exec vllm serve /mnt/models"


def redirections_script() -> str:
    """The costliest words found per word: redirections (`2>x a`), up to the word limit."""
    return "echo " + "2>x a " * ((MAX_SCRIPT_WORDS - 12) // 2) + "\nexec vllm serve /mnt/models\n"


def padded_to_body_limit() -> dict[str, Any]:
    """An annotated object with unrelated annotations filling the review to just under 3 MiB."""
    obj = isvc(command=VLLM)
    room = MAX_BODY - len(json.dumps(review_for(obj))) - 64 * 1024
    obj["metadata"]["annotations"].update({f"team.example.com/note-{i}": "x" * 1000 for i in range(room // 1040)})
    return obj


def env_of(values: object) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        obj = isvc(command=VLLM)
        obj["spec"]["predictor"]["model"]["env"] = values
        return obj
    return build


DECODES: dict[str, Callable[[], dict[str, Any]]] = {  # a million empty objects took 105 MiB and 95 ms before
    "padded to 3 MiB with long strings": padded_to_body_limit,
    "a million empty objects (3 MiB)": env_of([{}] * 1_000_000),
    f"{MAX_VALUES // 2 - 500:,} empty objects (value limit)": env_of([{}] * (MAX_VALUES // 2 - 500)),
    f"{MAX_VALUES - 500:,} short strings (value limit)": env_of(["a"] * (MAX_VALUES - 500)),
    f"{MAX_VALUES - 500:,} distinct keys (value limit)": env_of({f"k{i}": 1 for i in range(MAX_VALUES - 500)}),
}


def decode_cost(raw: bytes) -> str:
    """CPU ms and resident-set growth of decoding `raw`, in this fresh process that holds little else."""
    gc.collect()
    before = _rss_mib()
    started = time.process_time()
    try:
        kept = decode(raw, "application/json")
    except BadReview as bad:
        return f"{len(raw) // 1024:9,} {(time.process_time() - started) * 1000:8.1f} {_rss_mib() - before:9.2f}  " \
               f"{bad.status}: {bad.message[:60]}"
    ms = (time.process_time() - started) * 1000
    grown = _rss_mib() - before
    del kept
    return f"{len(raw) // 1024:9,} {ms:8.1f} {grown:9.2f}  decoded"


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def forwarded_under_limit() -> dict[str, Any]:
    """Many `"$@"` and many items, their product just under the launch limit."""
    n = int((MAX_LAUNCH_ARGUMENTS - 8) ** 0.5)
    return script("exec vllm serve /mnt/models " + '"$@" ' * n, "bash", *(["--x"] * n))


CASES: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("$( nested 3,000 deep", lambda: script("vllm serve /m " + "$(" * 3000 + ")" * 3000)),
    (f"$( nested {MAX_NESTING} deep (limit)",
     lambda: script("vllm serve /m " + "$(" * MAX_NESTING + ")" * MAX_NESTING)),
    ('1,500 "$@" x 1,500 items', lambda: script("vllm serve /m " + '"$@" ' * 1500, "bash", *(["x"] * 1500))),
    ('"$@" x items under the launch limit', forwarded_under_limit),
    ("1 MiB script of ordinary lines", lambda: script(ORDINARY_LINE * (2**20 // len(ORDINARY_LINE)) + "vllm serve /m")),
    ("script of ordinary lines at the word limit", lambda: script(ordinary_script_under_limits())),
    (f"script of {MAX_SCRIPT_WORDS:,} one-letter words (limit)", lambda: script(words_script())),
    (f"script of {MAX_SCRIPT_WORDS:,} words, half redirections (limit)", lambda: script(redirections_script())),
    ("LLMInferenceService, 2 roles at the word limit", lambda: llmisvc_with_scripts(redirections_script())),
    ("list launch of 600,000 items (3.5 MiB)", lambda: isvc(command=VLLM, args=["-tp", "2"] * 300_000)),
    (f"list launch of {MAX_LAUNCH_ARGUMENTS:,} flags (limit)",
     lambda: isvc(command=VLLM, args=["-tp", "2"] * ((MAX_LAUNCH_ARGUMENTS - 3) // 2))),
    (f"vLLM script line of {MAX_LAUNCH_ARGUMENTS:,} flags (limit)",
     lambda: script("exec vllm serve /mnt/models " + "-tp 2 " * ((MAX_LAUNCH_ARGUMENTS - 4) // 2))),
    ("GPU quantity of 4,401 digits", lambda: isvc(command=VLLM, limits={"nvidia.com/gpu": "1" * 4401})),
    (f"GPU quantity of {MAX_QUANTITY_LENGTH} characters (limit)",
     lambda: isvc(command=VLLM, limits={"nvidia.com/gpu": "0" * (MAX_QUANTITY_LENGTH - 1) + "8"})),
    ("ep.tensor-parallel-size of 4,401 digits",
     lambda: isvc(command=VLLM, annotations={"ep.tensor-parallel-size": "1" * 4401})),
    ("ep.enabled of a million numbers in lists",
     lambda: isvc(command=VLLM, annotations={"ep.enabled": [[0] * 1000] * 1000})),
    ("GPU quantity of a million numbers in lists",
     lambda: isvc(command=VLLM, limits={"nvidia.com/gpu": [[0] * 1000] * 1000})),
    ("GPU quantity of 1e308", lambda: isvc(command=VLLM, limits={"nvidia.com/gpu": 1e308})),
    ("ep.eplb-config of 100,000 nested [", lambda: isvc(command=VLLM, annotations={"ep.eplb-config": "[" * 100_000})),
    (f"ep.eplb-config of {MAX_EPLB_CONFIG_LENGTH:,} characters, depth {MAX_EPLB_CONFIG_DEPTH} (limit)",
     lambda: isvc(command=VLLM, annotations={"ep.eplb": "true", "ep.vllm-version": "0.15.1", "ep.eplb-config": (
         '{"policy":"' + "x" * (MAX_EPLB_CONFIG_LENGTH - 300) + '","window_size":'
         + "[" * (MAX_EPLB_CONFIG_DEPTH - 1) + "]" * (MAX_EPLB_CONFIG_DEPTH - 1) + "}")})),
    ("undo record nested 100,000 deep", lambda: isvc(command=VLLM, annotations={UNDO_RECORD: "[" * 100_000})),
    ("undo record of 2.5 MiB", lambda: isvc(command=VLLM, annotations={UNDO_RECORD: json.dumps(
        {"fields": {"/spec/predictor/model/command": ["x" * 1000] * 2500}, "applied": "0"})})),
    ("annotated object padded to the 3 MiB body limit", padded_to_body_limit),
    (f"annotated object with {MAX_VALUES // 2 - 500:,} empty objects (value limit)",
     env_of([{}] * (MAX_VALUES // 2 - 500))),
]


def cpu_ms(obj: dict[str, Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        mutate(obj)
        best = min(best, time.process_time() - started)
    return best * 1000


def peak_mib(call: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)  # stdin's review, fresh process
    ns = parser.parse_args()
    if ns.decode:
        print(decode_cost(sys.stdin.buffer.read()))
        return 0
    print(f"targets: {CPU_TARGET_MS:.0f} ms CPU, {MEMORY_TARGET_MIB:.0f} MiB peak per call\n")
    print(f"{'case':58} {'body KiB':>9} {'CPU ms':>8} {'peak MiB':>9}  verdict")
    worst_cpu = worst_mem = 0.0
    over = 0
    for label, build in CASES:
        obj = build()
        body = len(json.dumps(review_for(obj))) // 1024
        ms = cpu_ms(obj, ns.repeat)
        mib = peak_mib(lambda: mutate(obj))
        verdict = mutate(obj)
        outcome = "allowed" if verdict.allowed else "denied: " + verdict.message[:60]
        flag = " !" if ms > CPU_TARGET_MS or mib > MEMORY_TARGET_MIB else ""
        over += bool(flag)
        worst_cpu, worst_mem = max(worst_cpu, ms), max(worst_mem, mib)
        print(f"{label:58} {body:9,} {ms:8.1f} {mib:9.2f}  {outcome}{flag}")
    for label, build in DECODES.items():
        raw = json.dumps(review_for(build()), separators=(",", ":")).encode()
        done = subprocess.run([sys.executable, __file__, "--decode"], input=raw, capture_output=True, check=True)
        line = done.stdout.decode().strip()
        ms, mib = (float(x) for x in line.split()[1:3])
        flag = " !" if ms > CPU_TARGET_MS or mib > MEMORY_TARGET_MIB else ""
        over += bool(flag)
        worst_cpu, worst_mem = max(worst_cpu, ms), max(worst_mem, mib)
        print(f"{'server decode: ' + label:58} {line}{flag}")
    print(f"\nworst: {worst_cpu:.1f} ms CPU, {worst_mem:.2f} MiB; {over} case(s) over a target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
