"""CPU instructions per review on /mutate, counted by valgrind: a figure that does not drift with the machine.

    python bench/instructions.py [--reviews 200] [CASE ...]

Wall-clock figures on a shared machine swing by 2x between runs (see
bench/admission.py); instruction counts are the same from run to run, so a
change to the hot path can be judged by them. For each case (the cases of
bench/admission.py), the webhook's ASGI app answers N different reviews in
this process, exactly as `/mutate` answers them (body read, decode, policy,
engine, answer, metrics; the review log off as in the benchmark), and in a
second run builds the same reviews but answers none; the difference, divided
by N, is what one review costs. HTTP
and TLS are not counted (the floor in bench/admission.py measures those).

Needs Debian's valgrind. Each case takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def answer_reviews(case: str, built: int, count: int) -> None:
    """Build `built` + 30 different reviews of `case`; answer 30 (warm-up), then `count` of the others."""
    import logging

    from admission import CASES, MARK
    from tests.server_harness import review_for
    import uvloop

    from webhook.server.app import ServerState, create_app
    from webhook.server.server import tune_gc

    logging.getLogger("webhook.review").setLevel(logging.WARNING)
    app = create_app(ServerState())
    template = json.dumps(review_for(CASES[case], uid=f"bench-{MARK}"))
    bodies = [template.replace(MARK, str(i)).encode() for i in range(built + 30)]

    async def answer(body: bytes) -> None:
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, object]:
            return messages.pop()

        async def send(_message: dict[str, object]) -> None:
            return None

        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await app({"type": "http", "path": "/mutate", "method": "POST", "headers": headers}, receive, send)

    async def run(chosen: list[bytes]) -> None:
        for body in chosen:
            await answer(body)

    loop = uvloop.new_event_loop()  # as the server runs: uvloop, and its collector settings
    tune_gc()
    loop.run_until_complete(run(bodies[built:]))
    loop.run_until_complete(run(bodies[:count]))


def instructions(case: str, built: int, count: int) -> int:
    """Instructions valgrind counts for a whole run of this script answering `count` of `built` reviews."""
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--answer", case, str(built), str(count)],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"})  # the same dict and set layouts in every run
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no count: {out.stderr[-500:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("cases", nargs="*", help="cases of bench/admission.py (default: all)")
    parser.add_argument("--reviews", type=int, default=200)
    parser.add_argument("--answer", nargs=3, metavar=("CASE", "BUILT", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.answer:
        answer_reviews(args.answer[0], int(args.answer[1]), int(args.answer[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    from admission import CASES

    for case in args.cases or list(CASES):
        # Both runs build the same bodies and start the same app: only the answers differ.
        n = args.reviews
        per_review = (instructions(case, n, n) - instructions(case, n, 0)) / n
        print(f"{case:<20}{per_review:>12,.0f} instructions per review")
    return 0


if __name__ == "__main__":
    sys.exit(main())
