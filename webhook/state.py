"""The webhook's own annotation: what it changed, so the change can be undone.

`vllm-ep-webhook.io/original` holds a JSON object:

    {"container": "/spec/predictor/model",   # JSON pointer of the edited container
     "command": [...] | null,                 # command before the webhook touched it (null: absent)
     "args": [...] | null,                    # args before the webhook touched it (null: absent)
     "applied": "sha256:..."}                 # digest of command/args as the webhook left them

While command and args still match `applied`, the webhook recomputes from the
stored original (so a new GPU request gives a new data-parallel size) and
restores it exactly when EP is turned off. When a user has since edited
command or args, their edit becomes the new original.
"""

from __future__ import annotations

import hashlib
import json

import orjson
from dataclasses import dataclass

from webhook.errors import Denied
from webhook.settings import STATE

Strings = tuple[str, ...] | None


@dataclass(frozen=True)
class State:
    container: str
    command: Strings
    args: Strings
    applied: str


def _compact(value: object) -> bytes:
    """Compact JSON; orjson when it can (fast), the json module for odd strings (lone surrogates)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def digest(command: Strings, args: Strings) -> str:
    """A stable fingerprint of command/args as the webhook left them."""
    return "sha256:" + hashlib.sha256(_compact({"command": command, "args": args})).hexdigest()


def dump(state: State) -> str:
    return _compact(
        {
            "container": state.container,
            "command": None if state.command is None else list(state.command),
            "args": None if state.args is None else list(state.args),
            "applied": state.applied,
        }
    ).decode("utf-8", "surrogatepass")


def _strings(value: object) -> Strings:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError


def read(annotations: dict[str, object]) -> State | None:
    """The stored state, None if absent; Denied if it was tampered with."""
    raw = annotations.get(STATE)
    if raw is None:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str) else None
        if not isinstance(data, dict):
            raise ValueError
        container, applied = data.get("container"), data.get("applied")
        if not isinstance(container, str) or not isinstance(applied, str):
            raise ValueError
        return State(container, _strings(data.get("command")), _strings(data.get("args")), applied)
    except ValueError:
        raise Denied(
            f"annotation {STATE} is managed by the webhook and is not valid; remove it "
            f"(the webhook then takes the current command as the original)"
        ) from None
