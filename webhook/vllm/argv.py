"""Planning the edit of one vLLM argv.

The argv is a sequence of `Arg`s, wherever they physically live (list items,
words inside a script, positional items after a script). The planner decides,
per flag the webhook wants, which words to replace, which to delete and what
to append; `command` turns the edit into concrete list and script edits.

A wanted flag is replaced in place when nothing after it could override it;
when an opaque word follows (a `$VARIABLE` that may expand to flags, or
`"$@"` standing for arguments the webhook cannot see), the old occurrence is
deleted and the flag appended at the end instead, where the last-wins rule
makes it effective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from webhook.base.text import shorten
from webhook.vllm import flags
from webhook.base.errors import Denied, NotApplicable

VALUE_FLAGS = frozenset({flags.TP, flags.DP, flags.PP, flags.PCP, flags.ALL2ALL, flags.EPLB_CONFIG}) | flags.MULTI_NODE_VALUE_FLAGS
"""Flags the planner reads that take a value."""
BOOL_FLAGS = frozenset({flags.ENABLE_EP, flags.DISABLE_EP, flags.ENABLE_EPLB, flags.DISABLE_EPLB,
                        flags.ENABLE_DBO, flags.DISABLE_DBO}) | flags.MULTI_NODE_SWITCHES
"""Flags the planner reads that stand alone."""
_MAX_SHOWN = 40
END_OF_OPTIONS = "--"
"""argparse's end of options; vLLM's `serve` refuses it (tests/vllm/test_real_vllm.py)."""
DOTTED_EPLB = flags.EPLB_CONFIG + "."
DOTTED_LAST = "."
"""Marks a dotted flag without `=` that is the argv's last word, or followed by a word that expands at run time
(perhaps to nothing): vLLM takes the next word there is as its value."""
"""`--eplb-config.KEY V`: vLLM's parser folds these into one `--eplb-config` JSON appended last."""


class Arg(NamedTuple):
    """One word of vLLM's argv. `opaque` marks words that may hide flags.

    The core's per-review values are named tuples (see `workload`): immutable,
    and several are made per word of every review.
    """

    literal: str | None
    prefix: str = ""
    text: str = ""
    opaque: bool = False

    @classmethod
    def item(cls, value: str) -> Arg:
        """A list item: its literal value is its whole text."""
        return cls(value, value, value)


class DesiredFlag(NamedTuple):
    """A flag the webhook wants set (`present`) or gone (not `present`).

    With `add` False the flag is only corrected where it is written (its value
    fixed, its negation and duplicates removed), never added: something else
    (a KServe preset rendering `parallelism`) already passes it.
    """

    name: str
    value: str | None = None
    present: bool = True
    negation: str | None = None
    add: bool = True
    long_only: bool = False
    """The release reads only the `--long` spelling (vLLM before 0.14 has no `-ep`): a single-dash one is replaced."""


class Occurrence(NamedTuple):
    """One flag the planner cares about, where it stands in the argv and what value it has."""
    name: str
    spelling: str
    flag_index: int
    value_index: int | None
    value: str | None
    value_known: bool
    inline: bool
    flag_text: str
    value_text: str | None = None

    @property
    def display(self) -> str:
        """The occurrence as messages show it: the flag, and its separate value, as written (shortened)."""
        flag = shorten(self.flag_text, _MAX_SHOWN)
        return flag if self.value_text is None else f"{flag} {shorten(self.value_text, _MAX_SHOWN)}"

    @property
    def indices(self) -> tuple[int, ...]:
        """The argv positions the occurrence takes (the flag, and its value when separate)."""
        if self.value_index is None:
            return (self.flag_index,)
        return (self.flag_index, self.value_index)


@dataclass
class ArgvEdit:
    """The edits one argv needs: words replaced, words deleted, flag groups appended, and warnings."""
    replace: dict[int, str] = field(default_factory=dict)
    delete: set[int] = field(default_factory=set)
    append: list[tuple[str, ...]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _written(arg: Arg) -> str:
    return arg.text or (arg.literal or "")


def scan(args: Sequence[Arg]) -> list[Occurrence]:
    """Find every occurrence of the flags the webhook cares about, and of ambiguous option prefixes."""
    found: list[Occurrence] = []
    k = 0
    n = len(args)
    while k < n:
        a = args[k]
        literal = a.literal
        if literal is not None and literal[:1] != "-":  # most words: values and paths (`read_flag` says None)
            k += 1
            continue
        flag = None if a.opaque else flags.read_flag(literal, a.prefix)
        if flag is None:
            if a.literal == END_OF_OPTIONS:
                found.append(Occurrence(END_OF_OPTIONS, END_OF_OPTIONS, k, None, None, True, False, END_OF_OPTIONS))
            k += 1
            continue
        spelling, value, dynamic = flag
        name = flags.canonical(spelling)
        if name not in VALUE_FLAGS and name not in BOOL_FLAGS:
            # vLLM folds every dotted `-x.y V` / `-x.y=V` into one JSON flag before argparse runs
            # (FlexibleArgumentParser.parse_args, vllm/utils/argparse_utils.py, 0.33.0): without `=` the next
            # word is its value, whatever it is, so a flag there is no flag
            takes_next = value is None and "." in spelling
            if takes_next and k + 1 < n and (args[k + 1].opaque or args[k + 1].literal is None):
                # its value is a word that expands at run time, perhaps to nothing: then the next word is taken
                found.append(Occurrence(DOTTED_LAST, spelling, k, None, None, True, False, _written(a)))
                k += 1
                continue
            shown_value = args[k + 1].literal if takes_next and k + 1 < n else value
            # an ambiguous prefix stops vLLM's parser; dotted --eplb-config.KEY is folded into one, placed last
            if name[0] == flags.AMBIGUOUS or name.startswith(DOTTED_EPLB):
                found.append(Occurrence(name, spelling, k, k + 1 if takes_next and k + 1 < n else None,
                                        shown_value, True, value is not None, _written(a)))
            elif takes_next and k + 1 == n:
                found.append(Occurrence(DOTTED_LAST, spelling, k, None, None, True, False, _written(a)))
            k += 2 if takes_next else 1
            continue
        if value is not None or dynamic:
            found.append(Occurrence(name, spelling, k, None, value, not dynamic, True, _written(a)))
            k += 1
            continue
        if name in VALUE_FLAGS and k + 1 < n and not args[k + 1].opaque:
            v = args[k + 1]
            if v.literal is None or not flags.looks_like_flag(v.literal):
                found.append(
                    Occurrence(
                        name, spelling, k, k + 1, v.literal, v.literal is not None, False, _written(a), _written(v),
                    )
                )
                k += 2
                continue
        found.append(Occurrence(name, spelling, k, None, None, True, False, _written(a)))
        k += 1
    return found


def check_single_node(occurrences: Sequence[Occurrence]) -> None:
    """Refuse launches the single-pod EP layout would break."""
    for o in occurrences:
        if o.name in flags.MULTI_NODE_FLAGS:
            raise NotApplicable(
                f"the vLLM command uses {o.display}, a multi-node data-parallel setting; the webhook only "
                f"configures single-pod expert parallelism: remove that flag or the ep.enabled annotation"
            )
        if o.name in (flags.PP, flags.PCP) and not (o.value_known and o.value is not None and o.value.strip() == "1"):
            kind = "pipeline" if o.name == flags.PP else "prefill context"
            raise NotApplicable(
                f"the vLLM command uses {o.display}; expert parallelism from this webhook needs {kind} "
                f"parallel size 1 (DP = GPUs / TP): remove {o.spelling} or the ep.enabled annotation"
            )


def _matches(o: Occurrence, want: DesiredFlag) -> bool:
    if want.value is None:
        return o.value is None and o.value_known and not o.inline
    return o.value_known and o.value == want.value


def _rendered(want: DesiredFlag) -> str:
    return want.name if want.value is None else f"{want.name} {shorten(want.value, _MAX_SHOWN)}"


def plan_edit(args: Sequence[Arg], wants: Sequence[DesiredFlag], reject_conflicts: bool, single_node: bool = True) -> ArgvEdit:
    """Decide the edits that make `args` carry exactly the wanted flags.

    With `reject_conflicts`, a hand-written value that differs from the wanted
    one is not fixed but raises Denied naming it. `single_node` refuses
    multi-node data-parallel flags and pipeline parallelism.
    """
    occurrences = scan(args)
    for o in occurrences:
        if o.name in VALUE_FLAGS or o.name in BOOL_FLAGS:
            continue
        if o.name == END_OF_OPTIONS:
            raise Denied(
                "the vLLM command has a `--` among its arguments, which vLLM's parser refuses (\"unrecognized "
                "arguments\"), and flags after it would not be read as flags: remove the `--`"
            )
        if o.name == DOTTED_LAST:
            continue
        if o.name.startswith(DOTTED_EPLB) and any(w.name == flags.EPLB_CONFIG and w.present for w in wants):
            raise Denied(
                f"the vLLM command sets {o.spelling}, which vLLM folds into one --eplb-config placed last, "
                f"replacing the one from ep.eplb-config: move that key into ep.eplb-config"
            )
        if o.name.startswith(flags.AMBIGUOUS):
            raise Denied(
                f"vLLM stops at {o.spelling}: an ambiguous option, the start of "
                f"{', '.join(flags.matches(o.spelling.replace('_', '-')))}; write the whole flag"
            )
    if single_node:
        check_single_node(occurrences)
    consumed = {i for o in occurrences for i in o.indices}
    opaque = [k for k, a in enumerate(args) if a.opaque or (a.literal is None and k not in consumed)]
    last_opaque = opaque[-1] if opaque else -1

    result = ArgvEdit()
    if reject_conflicts:
        conflicts = []
        for want in wants:
            for o in occurrences:
                if want.present and (
                    (o.name == want.name and not _matches(o, want)) or o.name == want.negation
                ):
                    conflicts.append(o.display)
        if conflicts:
            shown = ", ".join(conflicts[:3]) + (" …" if len(conflicts) > 3 else "")
            raise Denied(
                f"the vLLM command sets {shown}, which conflicts with the expert-parallel settings the "
                f"webhook manages; the policy says onConflict: reject, so remove those flags and let the "
                f"webhook set them"
            )

    added: list[str] = []
    for want in wants:
        mine = [o for o in occurrences if o.name == want.name]
        if not want.present:
            for o in mine:
                result.delete.update(o.indices)
                result.warnings.append(f"removed {o.display}")
            continue
        for o in occurrences:
            if want.negation is not None and o.name == want.negation:
                result.delete.update(o.indices)
                result.warnings.append(f"removed {o.display}")
        first = mine[0] if mine else None
        if first is None and not want.add:
            continue
        if first is not None and max(first.indices) > last_opaque:
            if not _matches(first, want):
                _replace_in_place(result, first, want)
            elif want.long_only and want.value is None and not first.spelling.startswith("--"):
                result.replace[first.flag_index] = want.name
                result.warnings.append(f"replaced {first.display} with {want.name}")
            rest = mine[1:]
        else:
            if first is None:
                added.append(_rendered(want))
            elif not _matches(first, want):
                result.warnings.append(f"replaced {first.display} with {_new_value(want)}")
            rest = mine
            result.append.append((want.name,) if want.value is None else (want.name, want.value))
        for o in rest:
            result.delete.update(o.indices)
            if o is not first:
                result.warnings.append(f"removed duplicate {o.display}")
    open_dotted = next((o for o in occurrences if o.name == DOTTED_LAST), None)
    if result.append and open_dotted is not None:
        raise Denied(
            f"the vLLM command has {open_dotted.display}, a dotted flag without `=` and without a literal value "
            f"after it: vLLM takes the next word there is as its value (it folds dotted flags before parsing), "
            f"which may be a flag the webhook adds; write {open_dotted.spelling}=VALUE"
        )
    if added:  # one short warning for the flags that were not there at all
        result.warnings.append("added " + " ".join(added))
    return result


def _new_value(want: DesiredFlag) -> str:
    return want.name if want.value is None else shorten(want.value, _MAX_SHOWN)


def _replace_in_place(result: ArgvEdit, o: Occurrence, want: DesiredFlag) -> None:
    result.warnings.append(f"replaced {o.display} with {_new_value(want)}")
    if want.value is None:
        result.replace[o.flag_index] = o.spelling
    elif o.value_index is not None:
        result.replace[o.value_index] = want.value
    else:
        result.replace[o.flag_index] = f"{o.spelling}={want.value}"
