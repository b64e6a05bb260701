"""Taking the webhook's own edit back out of a value that was edited since: a three-way merge.

`rebase(original, written, current)`: `original` is a field before the webhook changed it, `written`
what the webhook wrote there, `current` the field as found now (edited since by a user or another
webhook). The answer is `current` with the webhook's change reverted and every other edit kept: the
user's intent. So turning EP off after `--max-model-len 4096` was changed to `32768` while EP was on
gives back `32768` and drops the webhook's `--enable-expert-parallel`.

The merge works on JSON values: objects key by key, lists element by element (aligned with
`difflib.SequenceMatcher`), strings word by word (runs of blanks, `=`, and the rest, so that a
`bash -c` script or an eval'd LLMInferenceService arg merges inside). Where the edit and the
webhook's change touch the same words, the edit wins and the merge is not `clean`: the caller then
removes the EP switch itself (see `webhook.core.engine`). Flags and their values align as units
(`_Flag`), so a value the webhook replaced in place stays with its flag. Alignment is quadratic in the
worst case: values beyond `LIMIT` elements or words are not merged, and a differing run beyond
`ALIGNED` units is one change; in both cases an edit there wins, not clean.
"""

from __future__ import annotations

import re
from collections import Counter
from difflib import SequenceMatcher
from typing import NamedTuple

import orjson

LIMIT = 65536
"""Most elements (or words of a string) merged; a longer value is taken as edited wholesale."""
ALIGNED = 256
"""Most units aligned where two values differ (past their common start and end): alignment is quadratic
(about 30 ms at this size with every unit alike); a longer differing run is one change."""

_WORDS = re.compile(r"\s+|=|[^\s=]+")


class Merged(NamedTuple):
    """The rebased value, and whether the webhook's change came out without touching the edit."""

    value: object
    clean: bool


class _Hunk(NamedTuple):
    start: int  # [start, end) of the written sequence
    end: int
    new: list[object]
    mine: bool  # the webhook's change (written -> original); else the edit (written -> current)


def rebase(original: object, written: object, current: object) -> Merged:
    """`current` less the webhook's change from `original` to `written` (None: absent)."""
    return _merge(original, written, current, True)


def _merge(original: object, written: object, current: object, split: bool) -> Merged:
    if current == written:
        return Merged(original, True)
    if original == written or original == current:
        return Merged(current, True)
    if original is None and type(written) is type(current) and isinstance(current, (dict, list)):
        empty, ok = _merge(type(current)(), written, current, split)  # absent before: added by the webhook
        return Merged(empty or None, ok)
    if isinstance(current, _Flag) and isinstance(written, _Flag) and isinstance(original, _Flag) \
            and len(current) == len(written) == len(original) and _name(current) == _name(written) == _name(original):
        parts = [_merge(o, w, c, split) for o, w, c in zip(original, written, current)]  # the value, in place
        return Merged(_Flag(str(m.value) for m in parts), all(m.clean for m in parts))
    if isinstance(current, dict) and isinstance(written, dict) and isinstance(original, dict):
        return _merge_objects(original, written, current)
    if isinstance(current, list) and isinstance(written, list) and isinstance(original, list):
        return _merge_lists(original, written, current, True)
    if split and isinstance(current, str) and isinstance(written, str) and isinstance(original, str):
        merged = _merge_lists(_WORDS.findall(original), _WORDS.findall(written), _WORDS.findall(current), False)
        value = merged.value
        return Merged("".join(str(w) for w in value) if isinstance(value, list) else current, merged.clean)
    return Merged(current, False)


def _merge_objects(original: dict[str, object], written: dict[str, object], current: dict[str, object]) -> Merged:
    out: dict[str, object] = {}
    clean = True
    absent = object()
    for key in [*current, *(k for k in original if k not in current and k not in written)]:
        o, w, c = original.get(key, absent), written.get(key, absent), current.get(key, absent)
        if c is w or c == w:
            value = o
        elif o is w or o == w:
            value = c
        elif o is absent or w is absent or c is absent:
            value, clean = c, False
        else:
            value, ok = _merge(o, w, c, True)
            clean = clean and ok
        if value is not absent:
            out[key] = value
    return Merged(out, clean)


def _key(value: object) -> object:
    """A hashable stand-in for a JSON value (SequenceMatcher indexes the elements)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return (type(value).__name__, value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return repr(value)


class _Flag(tuple[str, ...]):
    """A flag and its value, aligned as one unit: `("--max-model-len", "4096")`, or in a string's words
    `(" ", "--max-model-len", " ", "4096")` with the blanks before it, so that a value the webhook replaced
    in place is never aligned with an equal word elsewhere, nor a flag it appended with the blank before
    another one. A string's other words are units with their blanks before them too."""


def _units(items: list[object], words: bool) -> list[object]:
    """`items` with each flag and its value joined into a `_Flag` (`words`: a string's words, separators
    between them)."""
    out: list[object] = []
    i, n, step = 0, len(items), 3 if words else 2
    while i < n:
        item = items[i]
        if isinstance(item, str) and len(item) > 1 and item[0] == "-" and i + step - 1 < n:
            value, sep = items[i + step - 1], items[i + 1]
            separated = not words or (isinstance(sep, str) and (sep == "=" or (sep.isspace() and "\n" not in sep)))
            if separated and isinstance(value, str) and value[:1] not in ("-", "") and not value.isspace():
                out.append(_Flag(str(w) for w in items[i:i + step]))
                i += step
                continue
        out.append(item)
        i += 1
    return _with_blanks(out) if words else out


def _with_blanks(units: list[object]) -> list[object]:
    """Each run of blanks joined to the unit after it."""
    out: list[object] = []
    for i, unit in enumerate(units):
        if i and isinstance(units[i - 1], str) and str(units[i - 1]).isspace():
            out[-1] = _Flag((str(units[i - 1]), *(unit if isinstance(unit, _Flag) else (str(unit),))))
        else:
            out.append(unit)
    return out


def _flat(units: list[object]) -> list[object]:
    return [w for u in units for w in (u if isinstance(u, _Flag) else (u,))]


def _name(unit: object) -> object:
    """What aligns a unit with its rewritten self: a flag's name, else the whole unit."""
    if isinstance(unit, _Flag):
        parts = [w for w in unit if not w.isspace()]
        if len(parts) > 1 and parts[0][:1] == "-":
            return ("flag", parts[0])
    return _key(unit)


def _hunks(base: list[object], other: list[object], mine: bool) -> list[_Hunk]:
    """The changes from `base` to `other`: aligned by whole units, then, within a replaced run, by flag name
    (the value of a flag the webhook rewrote in place is a change of that flag alone)."""
    out = []
    head = 0
    while head < min(len(base), len(other)) and base[head] == other[head]:
        head += 1
    tail = 0
    while tail < min(len(base), len(other)) - head and base[-1 - tail] == other[-1 - tail]:
        tail += 1
    middle = base[head:len(base) - tail], other[head:len(other) - tail]
    if max(len(middle[0]), len(middle[1])) > ALIGNED:  # one change: an edit inside it is taken as wholesale
        return [_Hunk(head, len(base) - tail, list(middle[1]), mine)] if middle != ([], []) else []
    keys = [_key(v) for v in middle[0]], [_key(v) for v in middle[1]]
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, *keys, autojunk=False).get_opcodes():
        i1, i2, j1, j2 = i1 + head, i2 + head, j1 + head, j2 + head
        if tag == "replace":
            names = SequenceMatcher(None, [_name(v) for v in base[i1:i2]], [_name(v) for v in other[j1:j2]],
                                    autojunk=False)
            for sub, k1, k2, l1, l2 in names.get_opcodes():
                if sub != "equal":
                    out.append(_Hunk(i1 + k1, i1 + k2, other[j1 + l1:j1 + l2], mine))
                    continue
                out.extend(_Hunk(i1 + k, i1 + k + 1, [other[j1 + l1 + d]], mine)
                           for d, k in enumerate(range(k1, k2)) if base[i1 + k] != other[j1 + l1 + d])
        elif tag != "equal":
            out.append(_Hunk(i1, i2, other[j1:j2], mine))
    return out


def _clash(a: _Hunk, b: _Hunk) -> bool:
    """Whether two changes from different sides touch the same elements (an insertion is a point)."""
    if a.start == a.end and b.start == b.end:
        return a.start == b.start
    if a.start == a.end:
        return b.start < a.start < b.end
    if b.start == b.end:
        return a.start < b.start < a.end
    return max(a.start, b.start) < min(a.end, b.end)


def _joins(group: list[_Hunk], h: _Hunk) -> bool:
    start, end = min(g.start for g in group), max(g.end for g in group)
    return start < h.start < end or any(g.mine != h.mine and _clash(g, h) for g in group)


def _side(base: list[object], group: list[_Hunk], start: int, end: int, mine: bool) -> list[object]:
    """One side's content of base[start:end], given its hunks in the group."""
    out: list[object] = []
    at = start
    for h in group:
        if h.mine == mine:
            out.extend(base[at:h.start])
            out.extend(h.new)
            at = h.end
    out.extend(base[at:end])
    return out


def _merge_lists(original: list[object], written: list[object], current: list[object], split: bool) -> Merged:
    if max(len(original), len(written), len(current)) > LIMIT:
        return Merged(current, False)
    merged = _merge_units(_units(original, not split), _units(written, not split), _units(current, not split), split)
    return Merged(_flat(merged.value), merged.clean) if isinstance(merged.value, list) else merged


def _merge_units(original: list[object], written: list[object], current: list[object], split: bool) -> Merged:
    hunks = sorted(_hunks(written, original, True) + _hunks(written, current, False), key=lambda h: (h.start, h.end))
    groups: list[list[_Hunk]] = []
    for h in hunks:  # a group: changes linked by clashes, or one starting inside another group's span
        first = next((k for k, group in enumerate(groups) if _joins(group, h)), len(groups))
        groups[first:] = [[g for group in groups[first:] for g in group] + [h]]
    out: list[object] = []
    at, clean = 0, True
    for group in groups:
        start, end = min(h.start for h in group), max(h.end for h in group)
        out.extend(written[at:start])
        at = end
        if len({h.mine for h in group}) == 1:
            out.extend(_side(written, group, start, end, group[0].mine))
            continue
        mine, theirs = _side(written, group, start, end, True), _side(written, group, start, end, False)
        if mine == theirs:
            out.extend(theirs)
        elif split and end - start == 1 and len(mine) == 1 and len(theirs) == 1:
            value, ok = _merge(mine[0], written[start], theirs[0], True)
            out.append(value)
            clean = clean and ok
        else:
            out.extend(theirs)
            clean = False
    out.extend(written[at:])
    return Merged(out, clean)


def same_words(a: object, b: object) -> bool:
    """Whether two values are equal but for the order of their words (lists: each string's words, and the
    other elements): what a replay of the webhook on a rebased value must give back, wherever it puts the
    words it appends."""
    if isinstance(a, list) and isinstance(b, list):
        return _bag(a) == _bag(b)
    return a == b


def _bag(items: list[object]) -> Counter[object]:
    return Counter(w if isinstance(v, str) else _key(v) for v in items
                   for w in (_WORDS.findall(v) if isinstance(v, str) else (v,)))
