"""Reading JSON values of an object: the one place lists of strings are checked."""

from __future__ import annotations

from webhook.base.errors import Denied

_STR = frozenset({str})


def string_list(value: object, where: str) -> list[str] | None:
    """A list of strings as written, None when absent; Denied naming `where` otherwise."""
    if value is None:
        return None
    if not isinstance(value, list) or not set(map(type, value)) <= _STR:  # one pass in C, however long
        raise Denied(f"{where} must be a list of strings")
    return value


def strings_or_none(value: object) -> tuple[str, ...] | None:
    """A list of strings as a tuple; None when absent or not a list of strings (for lenient readers)."""
    try:
        found = string_list(value, "value")
    except Denied:
        return None
    return None if found is None else tuple(found)
