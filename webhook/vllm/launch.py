"""Recognising how a container starts vLLM.

A launch is a word sequence: optional prefixes (`exec`, `env A=b`, `A=b`,
`nohup`), a program, and the words that select the server. What follows
those words is the server's own argv, the part the webhook edits.

Two servers take vLLM's engine flags: vLLM itself, and KServe's
huggingfaceserver (`python -m huggingfaceserver`), whose vLLM backend parses
the same flags but then sets the tensor parallel size to the GPU count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, NamedTuple, Protocol

from webhook.vllm import shell
from webhook.vllm.argv import Arg
from webhook.base.errors import NotApplicable

SHELLS = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
_API_SERVER = "vllm.entrypoints.openai.api_server"
_CLI_MAIN = "vllm.entrypoints.cli.main"
_HUGGINGFACESERVER = "huggingfaceserver"
# python options that take a separate argument
_PYTHON_OPTS_WITH_ARG = frozenset({"-W", "-X", "-Q", "--check-hash-based-pycs"})
# env options that take a separate argument
_ENV_OPTS_WITH_ARG = frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string"})

EXPECTED = (
    "`vllm serve MODEL ...`, `python -m vllm.entrypoints.openai.api_server ...`, "
    "`python -m vllm.entrypoints.cli.main serve ...`, `python -m huggingfaceserver ...`, "
    "or a `bash -c` script that runs one of them"
)

Server = Literal["vllm", "huggingfaceserver"]

MAX_LAUNCH_ARGUMENTS = 1024
"""The most items the webhook reads in a container's command and args together, and the most arguments on
one vLLM line of a script, counting each `"$@"` there as every item after the script (so many `"$@"` and many
items cannot make the work grow with their product). vLLM launches take a few dozen; the work per item is a
few microseconds, several times over per review."""


def check_length(count: int, where: str = "the launch") -> None:
    """NotApplicable, naming `where` and `MAX_LAUNCH_ARGUMENTS`, when a launch has `count` items (or arguments)
    more than it."""
    if count > MAX_LAUNCH_ARGUMENTS:
        raise NotApplicable(
            f"{where}: {count:,} arguments, more than the {MAX_LAUNCH_ARGUMENTS:,} the webhook reads; "
            f"put long settings in a file and pass it with vLLM's --config"
        )


class ServerCall(NamedTuple):
    """A recognised launch: which server it starts and where that server's argv begins."""

    server: Server
    start: int


class Word(Protocol):
    """What launch detection needs of a word: its static value and prefix.

    Both kinds of word the webhook reads have them: list items (`argv.Arg`)
    and the words of a script (`shell.Word`).
    """

    @property
    def literal(self) -> str | None:
        """The word's value, None when it expands at run time."""

    @property
    def prefix(self) -> str:
        """The static text before the word's first expansion."""


def _basename(path: str) -> str:
    """The last component of a path, as posixpath.basename gives it."""
    return path.rpartition("/")[2]


def _is_assignment(word: Word) -> bool:
    text = word.literal if word.literal is not None else word.prefix
    return bool(_ASSIGNMENT.match(text))


def skip_prefixes(words: Sequence[Word], i: int = 0) -> int:
    """Index of the program word after `exec`, `env ...`, `nohup` and `A=b`."""
    n = len(words)
    while i < n:
        w = words[i].literal
        if w is None:
            if _is_assignment(words[i]):
                i += 1
                continue
            return i
        if w in ("exec", "nohup", "command"):
            i += 1
            while i < n and (words[i].literal or "").startswith("-") and words[i].literal != "--":
                i += 2 if words[i].literal == "-a" else 1
            continue
        if _basename(w) == "env":
            i += 1
            while i < n:
                a = words[i].literal
                if a is not None and a.startswith("-") and a != "-":
                    i += 2 if a in _ENV_OPTS_WITH_ARG else 1
                elif _is_assignment(words[i]):
                    i += 1
                else:
                    break
            continue
        if "=" in w and _is_assignment(words[i]):  # the program word, most often: no `=`, no regex
            i += 1
            continue
        return i
    return i


def find(words: Sequence[Word]) -> ServerCall | None:
    """The launch these words make, or None if they start neither vLLM nor huggingfaceserver."""
    i = skip_prefixes(words)
    n = len(words)
    if i >= n or words[i].literal is None:
        return None
    prog = _basename(words[i].literal or "")

    def lit(k: int) -> str | None:
        return words[k].literal if k < n else None

    if prog == "vllm":
        return ServerCall("vllm", i + 2) if lit(i + 1) == "serve" else None
    if not _PYTHON.fullmatch(prog):
        return None
    j = i + 1
    while j < n:
        a = lit(j)
        if a is None:
            return None
        if a == "-m":
            module, after = lit(j + 1), j + 2
        elif a.startswith("-m") and len(a) > 2:
            module, after = a[2:], j + 1
        elif a.startswith("-") and a != "-":
            j += 2 if a in _PYTHON_OPTS_WITH_ARG else 1
            continue
        else:
            return None
        if module == _API_SERVER:
            return ServerCall("vllm", after)
        if module == _CLI_MAIN and lit(after) == "serve":
            return ServerCall("vllm", after + 1)
        if module == _HUGGINGFACESERVER:
            return ServerCall("huggingfaceserver", after)
        return None
    return None


class ShellCall(NamedTuple):
    """`SHELL [options] -c SCRIPT [$0 [args...]]`: where the script word sits."""

    script_index: int


def shell_call(words: Sequence[Word]) -> ShellCall | None:
    """Recognise a shell started with -c; None for anything else."""
    i = skip_prefixes(words)
    n = len(words)
    if i >= n or words[i].literal is None:
        return None
    shell = _basename(words[i].literal or "")
    if shell not in SHELLS:
        return None
    j = i + 1
    has_c = False
    while j < n:
        a = words[j].literal
        if a is None:
            break
        if a == "--":
            j += 1
            break
        if a.startswith("--") and len(a) > 2:
            j += 1
            continue
        if len(a) > 1 and a[0] in "-+":
            if a[0] == "-" and "c" in a[1:]:
                has_c = True
            j += 2 if a[1:] in ("o", "O") else 1
            continue
        break
    if not has_c or j >= n:
        return None
    return ShellCall(j)


class ListLaunch(NamedTuple):
    """A list command (command items, then args) that is itself the launch; `call` None: it starts no known server."""

    words: tuple[Arg, ...]
    call: ServerCall | None


class ScriptLaunch(NamedTuple):
    """A `bash -c` script among the items: its parsed commands, and those that start a server.

    `commands` is None when the script cannot be parsed (`error` says why); `others` renders up to four
    commands that start no server, for messages.
    """

    words: tuple[Arg, ...]
    script_index: int
    commands: tuple[shell.Command, ...] | None
    calls: tuple[tuple[shell.Command, ServerCall], ...] = ()
    others: tuple[str, ...] = ()
    error: str | None = None
    beyond_limit: bool = False
    """The script was not read because it is beyond a limit of `shell` (`error` names it)."""

    def script_words(self) -> tuple[Arg, ...]:
        """Every word of the script, as argv words (none when it cannot be parsed)."""
        return tuple(Arg(w.literal, w.prefix, w.text) for c in self.commands or () for w in c.words)

    def forwards(self) -> bool:
        """Whether a launch line passes the items after the script on (`"$@"` or `$*`)."""
        return any(w.all_positional for c, _ in self.calls for w in c.words)


def read(items: Sequence[str]) -> ListLaunch | ScriptLaunch:
    """How `items` (a container's command, then its args) start a server: the one place that reads it.

    A shell started with `-c` is a script launch; anything else is read as a list launch.
    NotApplicable when there are more than `MAX_LAUNCH_ARGUMENTS` items or the script is beyond a limit of `shell`.
    """
    check_length(len(items))
    words = tuple(map(Arg.item, items))
    call = shell_call(words)
    if call is None:
        return ListLaunch(words, find(words))
    try:
        commands = tuple(shell.parse(items[call.script_index]))
    except shell.ShellSyntaxError as e:
        return ScriptLaunch(words, call.script_index, None, error=str(e), beyond_limit=isinstance(e, shell.ShellLimitError))
    calls: list[tuple[shell.Command, ServerCall]] = []
    others: list[str] = []
    for command in commands:
        found = None if command.compound else find(command.words)
        if found is not None:
            calls.append((command, found))
        elif len(others) < 4:
            others.append(describe(command.words, 2))
    return ScriptLaunch(words, call.script_index, commands, tuple(calls), tuple(others))


def server_of(items: Sequence[str]) -> Server:
    """The server a container's own command starts (vLLM when none is recognised: rewriting then says so).

    More than `MAX_LAUNCH_ARGUMENTS` items are not read (vLLM: rewriting then denies, naming the limit)."""
    if len(items) > MAX_LAUNCH_ARGUMENTS:
        return "vllm"
    if _HUGGINGFACESERVER not in "\0".join(items):  # the name has no NUL: a match is within one item
        return "vllm"  # the only other server: its module name must be written somewhere
    found = read(items)
    if isinstance(found, ListLaunch):
        return found.call.server if found.call else "vllm"
    return found.calls[0][1].server if found.calls else "vllm"


def describe(words: Sequence[Word], limit: int = 3) -> str:
    """A short, quoted rendering of a command's first words for messages."""
    shown = [w.literal if w.literal is not None else (w.prefix + "…") for w in words[:limit]]
    text = " ".join(shown) + (" …" if len(words) > limit else "")
    if len(text) > 60:
        text = text[:59] + "…"
    return f"`{text}`"
