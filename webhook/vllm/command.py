"""Editing vLLM's argv where it lives in a container's command and args.

Four forms occur in practice:
- a list command (`vllm serve ...`, `python -m vllm.entrypoints...`), with
  more of vLLM's argv possibly in `args`;
- a shell (`bash -c SCRIPT [$0 [args...]]`) whose script runs vLLM, with
  list items after the script reaching vLLM only through `"$@"`;
- no command at all: KServe takes the runtime's command and appends the
  InferenceService's `args` after the runtime's, so flags go to `args`;
- no command, args under a preset's `eval "exec vllm serve ... $@"` (an
  LLMInferenceService): the shell parses every item again, so the values
  written there are shell-quoted, and items that are not plain words may
  hide flags.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from webhook.vllm import argv
from webhook.vllm import flags
from webhook.vllm import launch
from webhook.vllm import shell
from webhook.vllm.argv import Arg, DesiredFlag
from webhook.base.errors import Denied, NotApplicable

CommandArgs = tuple[tuple[str, ...] | None, tuple[str, ...] | None]

ArgsForm = Literal["argv", "eval"]
"""How the server reads a container's words.

- "argv": list items are argv words (command, then args);
- "eval": no command of its own; the args are appended to a preset script's
  `eval "exec vllm serve ... $@"`, so the shell parses each of them again.
"""


class Site(Protocol):
    """Where one vLLM argv lives, as the edit needs to know it (`core.workload.Launch` is one).

    `where` names the container in messages (`spec.predictor.model`); `form` says how
    its args reach the server; `own_image` marks a user-defined container (without a
    command the image's entrypoint runs); `runtime_args` are words another party (a
    KServe runtime) puts between the command and `args`, read for checks only.
    """

    @property
    def where(self) -> str:
        """The container, as messages name it."""

    @property
    def form(self) -> ArgsForm:
        """How the args reach the server."""

    @property
    def own_image(self) -> bool:
        """Whether the container is user-defined (no runtime merged in)."""

    @property
    def runtime_args(self) -> tuple[str, ...]:
        """Words put before `args` by another party."""


# -- locations ---------------------------------------------------------------


class Location(NamedTuple):
    """A list item (`field`, `position`), or a span inside that item's script."""

    field: str
    position: int
    span: tuple[int, int] | None = None


@dataclass
class _Edits:
    """Concrete edits collected from one or more plans, applied at once."""

    items: dict[tuple[str, int], str] = field(default_factory=dict)
    deleted: set[tuple[str, int]] = field(default_factory=set)
    appended: dict[str, list[str]] = field(default_factory=dict)
    script: dict[tuple[str, int], list[tuple[int, int, str]]] = field(default_factory=dict)

    def apply(self, command: tuple[str, ...] | None, args: tuple[str, ...] | None, scripts: dict[tuple[str, int], str]) -> CommandArgs:
        lists = {"command": list(command or ()), "args": list(args or ())}
        for key, edits in self.script.items():
            lists[key[0]][key[1]] = shell.splice(scripts[key], sorted(set(edits)))
        for key, value in self.items.items():
            lists[key[0]][key[1]] = value
        out: dict[str, tuple[str, ...]] = {}
        for name, items in lists.items():
            if self.deleted:
                items = [v for i, v in enumerate(items) if (name, i) not in self.deleted]
            out[name] = tuple(items + self.appended.get(name, []))
        new_command = out["command"] if command is not None else None
        new_args = out["args"] if (args is not None or out["args"]) else None
        return new_command, new_args


def kubelet_literal(text: str) -> str:
    """`text` as a command/args item whose value survives Kubernetes' `$(VAR)` expansion unchanged.

    The kubelet expands `$(NAME)` in a container's command and args and turns `$$` into `$`
    (Kubernetes, `third_party/forked/golang/expansion`); with every `$` doubled, it gives `text` back.
    """
    return text.replace("$", "$$")


def _item_locations(command_length: int, first: int = 0, runtime_at: int | None = None) -> Callable[[int], Location]:
    """Where word k of an argv planned from item `first` of command + args on lives, the first
    `command_length` items being the command's. With `runtime_at`, word `runtime_at` stands for the runtime's
    args, which the webhook cannot edit (`Location("args", -1)`), and the words after it are one item earlier.

    A `Location` is made only for a word an edit touches: one for every item cost more than the rest of a
    list edit."""
    def locate(k: int) -> Location:
        if runtime_at is not None and k >= runtime_at:
            if k == runtime_at:
                return Location("args", -1)
            k -= 1
        i = first + k
        return Location("command", i) if i < command_length else Location("args", i - command_length)
    return locate


def _apply_edit(
    edit: argv.ArgvEdit,
    locate: Callable[[int], Location],
    scripts: dict[tuple[str, int], str],
    edits: _Edits,
    append_at: Location,
    quote_items: bool = False,
) -> None:
    def item(value: str) -> str:
        return kubelet_literal(shell.quote(value) if quote_items else value)

    def script_text(value: str) -> str:
        return kubelet_literal(shell.quote(value))

    for k, value in edit.replace.items():
        loc = locate(k)
        if loc.span is None:
            edits.items[(loc.field, loc.position)] = item(value)
        else:
            edits.script.setdefault((loc.field, loc.position), []).append((loc.span[0], loc.span[1], script_text(value)))
    for k in edit.delete:
        loc = locate(k)
        if loc.span is None:
            edits.deleted.add((loc.field, loc.position))
        else:
            script = scripts[(loc.field, loc.position)]
            start = shell.blank_start(script, loc.span[0])
            edits.script.setdefault((loc.field, loc.position), []).append((start, loc.span[1], ""))
    if edit.append:
        if append_at.span is None:
            edits.appended.setdefault(append_at.field, []).extend(item(v) for group in edit.append for v in group)
        else:
            script = scripts[(append_at.field, append_at.position)]
            pos = append_at.span[1]
            separator = shell.continuation_style(script, append_at.span[0])
            text = "".join(separator + " ".join(script_text(v) for v in group) for group in edit.append)
            edits.script.setdefault((append_at.field, append_at.position), []).append((pos, pos, text))


# -- rewriting -----------------------------------------------------------------


class Rewrite(NamedTuple):
    """Command and args after an edit, and what the edit did (for warnings)."""

    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    warnings: tuple[str, ...]


def _eval_arg(value: str) -> Arg:
    """An args item under `eval`: read as the shell will; an item that splits or expands may hide flags."""
    if shell.quote(value) == value:
        return Arg.item(value)
    try:
        commands = shell.parse(value)
    except shell.ShellSyntaxError:
        commands = []
    if len(commands) == 1 and not commands[0].compound and len(commands[0].words) == 1:
        word = commands[0].words[0]
        if word.literal is not None and word.start == 0 and word.end == len(value):
            return Arg(word.literal, word.prefix, value)
    return Arg(None, "", value, opaque=True)


def rewrite(
    site: Site,
    command: tuple[str, ...] | None,
    args: tuple[str, ...] | None,
    wants: Sequence[DesiredFlag],
    reject: bool,
    single_node: bool = True,
) -> Rewrite:
    """Edit command/args so that the server gets exactly the wanted flags.

    Nothing is memoised: a cache keyed by whole commands grows with what
    clients send, and never-repeated objects (the real traffic) gain nothing.
    `single_node` refuses multi-node data-parallel flags in the argv. A denial about the argv names the
    container (`site.where`) it is in.
    """
    try:
        return _rewrite(site, command, args, tuple(wants), reject, single_node)
    except Denied as denied:
        if denied.message.startswith(("the vLLM command", "vLLM stops at")):
            raise type(denied)(f"{site.where}: {denied.message}") from None
        raise


def _rewrite(
    c: Site,
    command: tuple[str, ...] | None,
    args: tuple[str, ...] | None,
    wants: tuple[DesiredFlag, ...],
    reject: bool,
    single_node: bool,
) -> Rewrite:
    edits = _Edits()
    scripts: dict[tuple[str, int], str] = {}
    warnings: list[str] = []
    launch.check_length(len(command or ()) + len(args or ()), f"{c.where}.command and .args")
    if not command:
        items = args or ()
        evaluated = c.form == "eval"
        arg_words = [_eval_arg(v) if evaluated else Arg.item(v) for v in items]
        edit = argv.plan_edit(arg_words, wants, reject, single_node)
        _apply_edit(edit, _item_locations(0), scripts, edits, Location("args", len(items)), quote_items=evaluated)
        warnings.extend(edit.warnings)
        if c.own_image and edit.append:
            warnings.append("no command: the flags go to args, assuming the image's entrypoint starts vLLM")
        new_command, new_args = edits.apply(None, args, scripts)
        return Rewrite(new_command, new_args, tuple(warnings))

    full = list(command) + list(args or ())
    found = launch.read(full)
    if isinstance(found, launch.ScriptLaunch):
        _rewrite_script(c, full, _item_locations(len(command)), found, wants, reject, single_node, edits, scripts, warnings)
    else:
        if found.call is None:
            raise NotApplicable(
                f"{c.where}.command runs {launch.describe(found.words)}, which is not a recognisable vLLM launch; "
                f"expected {launch.EXPECTED}"
            )
        start = found.call.start
        plan_args = list(found.words[start:])
        runtime_at = None
        append_at = Location("args", len(args)) if args else Location("command", len(command))
        if _sets_wanted_flags(c.runtime_args, wants):
            # KServe puts the runtime's args between this command and these args, where the webhook
            # cannot edit them: what the command says is overridden there, so the flags go to args.
            cut = len(command) - start
            plan_args.insert(cut, Arg(None, "", " ".join(c.runtime_args), opaque=True))
            runtime_at = cut
            append_at = Location("args", len(args or ()))
        edit = argv.plan_edit(plan_args, wants, reject, single_node)
        _apply_edit(edit, _item_locations(len(command), start, runtime_at), scripts, edits, append_at)
        warnings.extend(edit.warnings)
    new_command, new_args = edits.apply(command, args, scripts)
    return Rewrite(new_command, new_args, tuple(warnings))


def _sets_wanted_flags(runtime_args: Sequence[str], wants: Sequence[DesiredFlag]) -> bool:
    """Whether the runtime's args write any flag the webhook sets (or its negation)."""
    if not runtime_args:
        return False
    names = {w.name for w in wants} | {w.negation for w in wants if w.negation}
    return any(o.name in names for o in argv.scan([Arg.item(v) for v in runtime_args]))


def _rewrite_script(
    c: Site,
    full: list[str],
    item_location: Callable[[int], Location],
    found: launch.ScriptLaunch,
    wants: Sequence[DesiredFlag],
    reject: bool,
    single_node: bool,
    edits: _Edits,
    scripts: dict[tuple[str, int], str],
    warnings: list[str],
) -> None:
    script_index = found.script_index
    script_loc = item_location(script_index)
    script = full[script_index]
    scripts[(script_loc.field, script_loc.position)] = script
    where = f"{c.where}.{script_loc.field}[{script_loc.position}]"
    if found.commands is None:
        raise NotApplicable(
            f"the script in {where} cannot be edited safely: {found.error}; fix the script or edit it by hand"
        )
    if not found.calls:
        ran = ", ".join(found.others) if found.others else "nothing"
        raise NotApplicable(
            f"the script in {where} runs {ran}, but no recognisable vLLM launch; expected {launch.EXPECTED}"
        )
    positional = list(range(script_index + 2, len(full)))
    for cmd, call in found.calls:
        line = cmd.words[call.start:]
        forwarded = sum(1 for w in line if w.all_positional)
        if len(line) + forwarded * len(positional) > launch.MAX_LAUNCH_ARGUMENTS:
            raise NotApplicable(
                f'the vLLM line of the script in {where} passes {forwarded} "$@" of {len(positional)} items each, '
                f"more than the {launch.MAX_LAUNCH_ARGUMENTS:,} arguments the webhook reads on one line; "
                f'write "$@" once'
            )
        args: list[Arg] = []
        locs: list[Location] = []
        for w in line:
            span_loc = Location(script_loc.field, script_loc.position, (w.start, w.end))
            if w.all_positional:
                for p in positional:
                    args.append(found.words[p])
                    locs.append(item_location(p))
                # also stands for runtime args the webhook cannot see
                args.append(Arg(None, "", w.text, opaque=True))
                locs.append(span_loc)
            else:
                args.append(Arg(w.literal, w.prefix, w.text))
                locs.append(span_loc)
        edit = argv.plan_edit(args, wants, reject, single_node)
        last = cmd.words[-1]
        _apply_edit(edit, locs.__getitem__, scripts, edits, Location(script_loc.field, script_loc.position, (last.start, last.end)))
        warnings.extend(edit.warnings)
    after_script = range(script_index + 1, len(full))
    if not found.forwards() and after_script:
        stray = [full[p] for p in after_script if argv.scan([found.words[p]])]
        if stray:
            warnings.append(f'ignored {" ".join(stray)} after the script: without "$@" it never reaches vLLM')


def _words(items: list[str], with_script: bool, strict: bool = False) -> list[Arg]:
    """The items as argv words, followed, when `with_script`, by every word of a `bash -c` script among them.

    NotApplicable when there are more than `launch.MAX_LAUNCH_ARGUMENTS` items and, when `strict`, when the
    script is beyond a limit of `shell`."""
    launch.check_length(len(items))
    if not with_script:
        return [Arg.item(v) for v in items]
    found = launch.read(items)
    if strict and isinstance(found, launch.ScriptLaunch) and found.beyond_limit:
        raise NotApplicable(f"the launch script cannot be checked: {found.error}")
    return [*found.words, *(found.script_words() if isinstance(found, launch.ScriptLaunch) else ())]


def flag_value(
    runtime_args: Sequence[str], command: Sequence[str] | None, args: Sequence[str] | None, name: str
) -> str | None:
    """The last static value of `--name VALUE` / `--name=VALUE` the server would see, if any."""
    words = _words(list(command or ()) + list(runtime_args) + list(args or ()), bool(command))
    value = None
    for k, w in enumerate(words):
        text = w.literal or ""
        if text == name and k + 1 < len(words):
            value = words[k + 1].literal
        elif text.startswith(name + "="):
            value = text[len(name) + 1:]
    return value


MODEL_FLAGS = ("--model", "--served-model-name")
"""The flags that name the model a vLLM server serves (vllm/engine/arg_utils.py, every release profiled)."""


def models_named(runtime_args: Sequence[str], command: Sequence[str] | None, args: Sequence[str] | None
                 ) -> tuple[str, ...]:
    """The models a launch names where they are literal: the positional model of `vllm serve MODEL` (its
    `model_tag`, vllm/entrypoints/cli/serve.py) in a list launch, and the last `--model` and `--served-model-name`
    (the first name of it). Empty when the launch cannot be read."""
    items = [*(command or ()), *runtime_args, *(args or ())]
    try:
        found = launch.read(items) if command else None
        named = [flag_value(runtime_args, command, args, flag) for flag in MODEL_FLAGS]
    except NotApplicable:
        return ()
    if isinstance(found, launch.ListLaunch) and found.call is not None:
        words, start = found.words, found.call.start
        if 0 < start < len(words) and words[start - 1].literal == "serve":
            named.append(words[start].literal)
    return tuple(n for n in named if n and not n.startswith("-"))


def switched_on(
    runtime_args: Sequence[str], command: Sequence[str] | None, args: Sequence[str] | None, on: str, off: str
) -> bool:
    """Whether the last of the switch `on` / its negation `off` (any spelling) the server would see is `on`."""
    state = False
    for o in argv.scan(_words(list(command or ()) + list(runtime_args) + list(args or ()), bool(command))):
        if o.name == on or o.name == off:
            state = o.name == on
    return state


def find_ep_flag(command: tuple[str, ...] | None, args: tuple[str, ...] | None) -> str | None:
    """A hand-written `--enable-expert-parallel` (any spelling) in command, args or a script.

    NotApplicable, naming the limit, when the launch or its script is beyond a limit, so that what cannot be
    read is never taken for a launch without the flag."""
    for o in argv.scan(_words(list(command or ()) + list(args or ()), bool(command), strict=True)):
        if o.name == flags.ENABLE_EP:
            return o.display
    return None

