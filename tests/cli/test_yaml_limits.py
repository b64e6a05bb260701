"""The offline reader refuses YAML that would cost far more than its size: exit 2 and a message naming the limit."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.cli.test_cli import cli
from tests.helpers import isvc

OBJECT = yaml.safe_dump(isvc(command=["vllm", "serve", "/mnt/models"]))


def _laughs(levels: int) -> str:
    """A billion-laughs document: each level an anchored list of nine aliases to the level before."""
    lines = ['l0: &l0 ["ha","ha","ha","ha","ha","ha","ha","ha","ha"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return OBJECT + "laughs:\n" + "".join(f"  {line}\n" for line in lines)


BAD = [
    # 540 bytes that became 1.4 GB of JSON, 55 s and 6 GiB with -o json
    ("alias bomb", _laughs(8), "more than 10 times what is written"),
    ("deep nesting", OBJECT + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n", "deeper than 100 levels"),
    ("huge number", OBJECT + "big: " + "1" * 5000 + "\n", "5,000 digits"),
    ("alias cycle", "apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: x, self: *m}\n", "refers to the collection"),
]


@pytest.mark.parametrize(("label", "text", "needle"), BAD, ids=[b[0] for b in BAD])
def test_input_beyond_a_limit_is_refused_with_exit_2_and_no_traceback(label: str, text: str, needle: str) -> None:
    done = cli("mutate", "-f", "-", "-o", "json", stdin=text)
    assert done.returncode == 2, (label, done.stderr[-500:])
    assert "cannot be read safely" in done.stderr and needle in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_anchors_and_merge_keys_people_write_still_load() -> None:
    text = OBJECT + "defaults: &d {a: 1, b: [1, 2]}\nuse:\n  <<: *d\n  c: 3\nagain: *d\n"
    done = cli("mutate", "-f", "-", "-o", "json", stdin=text)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["use"] == {"a": 1, "b": [1, 2], "c": 3}
