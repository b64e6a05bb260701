"""Memory stays bounded whatever clients send: the denial of service of issue 14.

Anyone allowed to `kubectl create --dry-run=server` an InferenceService can
make the API server post reviews of objects they choose. A server that
remembered anything per distinct object (a verdict memo, a memoised rewrite)
grew from 60 MiB to over 500 MiB on 1,500 such reviews, past the chart's
256Mi limit, and an OOM-killed webhook that fails closed blocks every
annotated write in the cluster.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import isvc
from tests.server_harness import Server, review_for, server_with_new_certs

REVIEWS = 1500
BODY_KIB = 66
LIMIT_MIB = 160


def large_review(i: int) -> bytes:
    """An annotated review of about BODY_KIB KiB that no other `i` repeats: in its script or command, name and uid.

    Most of it is in the command (just under 64 KB, as anything that keyed a
    cache by the predictor would take it; a script holds 30 KB of it and its `$0` the rest), the rest in
    managedFields.
    """
    filler = f"{i:06d}" + "x" * (62 * 1024)
    if i % 2:
        # the script stays under shell.MAX_SCRIPT_LENGTH (32 KiB); the rest of the filler is its $0
        launch = f"exec vllm serve /mnt/models --max-model-len {1000 + i} --tensor-parallel-size ${{N}}\n"
        script = f"# {filler[:30 * 1024]}\n{launch}"
        obj = isvc(command=["bash", "-c", script, filler[30 * 1024:]])
    else:
        obj = isvc(command=["vllm", "serve", "/mnt/models", "--served-model-name", filler, "-tp", str(i % 7 + 1)])
    obj["metadata"]["name"] = f"model-{i}"
    obj["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                                         "fieldsV1": {f"f:label-{k}": {} for k in range(200)}}]
    return json.dumps(review_for(obj, uid=f"uid-{i}", dry_run=True)).encode()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Server]:
    with server_with_new_certs(tmp_path) as s:
        yield s


@pytest.mark.slow
def test_fifteen_hundred_distinct_large_reviews_leave_the_servers_rss_under_160_mib(server: Server) -> None:
    assert len(large_review(0)) > (BODY_KIB - 2) * 1024
    start_mib = status_kib(server.proc.pid, "VmRSS") / 1024
    mutated = 0
    conn = server.connect(timeout=30)
    try:
        for i in range(REVIEWS):
            conn.request("POST", "/mutate", large_review(i), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = json.loads(resp.read())["response"]
            assert resp.status == 200 and answer["allowed"] and answer["uid"] == f"uid-{i}", answer
            patch = json.loads(base64.b64decode(answer["patch"]))
            mutated += any(op["path"] == "/spec/predictor/model/command" for op in patch)
    finally:
        conn.close()
    peak_mib = status_kib(server.proc.pid, "VmHWM") / 1024
    now_mib = status_kib(server.proc.pid, "VmRSS") / 1024
    print(f"{REVIEWS} distinct {BODY_KIB} KiB reviews: RSS {start_mib:.0f} MiB at start, peak {peak_mib:.0f} MiB, "
          f"{now_mib:.0f} MiB after")
    assert mutated == REVIEWS  # every review went through the engine and was edited
    assert peak_mib < LIMIT_MIB, f"peak RSS {peak_mib:.0f} MiB after {REVIEWS} distinct reviews"
    reported_mib = server.metrics()["process_resident_memory_bytes"] / 2**20
    assert abs(reported_mib - now_mib) < 16  # /metrics reports the server's own memory
