"""A POSIX-shell lexer that keeps byte positions.

The webhook edits vLLM invocations inside `bash -c SCRIPT` commands. Rewriting
the script from a parse tree would lose comments, indentation, variables and
templates; instead the lexer reports, for every word of every simple command,
where it sits in the script and what it means when that meaning is knowable
without running anything. The editor then splices new text into exactly those
spans and leaves every other byte alone.

Only what is needed to find simple commands and their words is modelled:
quoting ('', "", $'', backslash), expansions ($x, ${...}, $(...), $((...)),
backticks), comments, line continuations, control operators, redirections and
here-documents. Anything whose value depends on the run time is marked dynamic.

Work is bounded: a script longer than `MAX_SCRIPT_LENGTH`, with more than
`MAX_SCRIPT_WORDS` words or with expansions nested deeper than `MAX_NESTING`
is refused with a `ShellLimitError` that names the limit, before it costs
more than a few milliseconds.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

MAX_SCRIPT_LENGTH = 32 * 1024
"""The longest `bash -c` script the webhook reads, in characters (32 KiB).

KServe's longest launch scripts, the LLMInferenceService presets (KServe after v0.20.0, commit aaac4e294dae,
`config/llmisvcconfig/config-llm-prefill-worker-data-parallel.yaml`), are
about 9 KB; reading one character costs about a microsecond, so a script at
the limit is read in tens of milliseconds at most."""
MAX_SCRIPT_WORDS = 4096
"""The most words (of all commands together, redirection targets included) in a script the webhook reads;
the presets above have about 900. A script of ordinary lines reaches it at about 22 KiB, before the length limit."""
MAX_NESTING = 64
"""The deepest nesting of `$( )`, `$(( ))` and `${ }` in each other, quoted or not; real scripts nest a few levels."""

_BLANKS = " \t"
_OPERATOR_CHARS = ";&|()<>"
_RESERVED_SKIP = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"})
_RESERVED_END = frozenset({"fi", "done", "esac", "}"})
_RESERVED_COMPOUND = frozenset({"for", "case", "select", "function", "in"})
_SAFE_UNQUOTED = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# runs of characters with no meaning to the lexer, consumed in one step
_PLAIN_RUN = re.compile(r"[^ \t\n;&|()<>\\'\"$`*?\[]+")
_PLAIN_IN_DOUBLE = re.compile(r'[^"\\$`]+')
_WORD_END = frozenset(" \t\n;&|()<>")


_Emit = Callable[[str], None]
_Mark = Callable[[], None]


class ShellSyntaxError(ValueError):
    """The script cannot be split into words reliably (e.g. an unterminated quote)."""


class ShellLimitError(ShellSyntaxError):
    """The script is beyond one of the limits above; the message names the limit and how to stay under it."""


class Word(NamedTuple):
    """One shell word: its span in the script and, if static, its value (a named tuple: immutable, and one is
    made per word of every script read).

    `literal` is the word after quote removal when nothing in it expands at run
    time, else None. `prefix` is the static text before the first expansion,
    which is enough to recognise `--flag=$VALUE`.
    """

    start: int
    end: int
    text: str
    literal: str | None
    prefix: str
    all_positional: bool = False


@dataclass
class Command:
    """A simple command: its words in order, redirections left out."""

    words: list[Word] = field(default_factory=list)
    compound: bool = False


def quote(value: str) -> str:
    """Quote a value for the script; plain flags and numbers stay unquoted."""
    if value and _SAFE_UNQUOTED.fullmatch(value):
        return value
    return shlex.quote(value)


class _Lexer:
    def __init__(self, script: str) -> None:
        self.s = script
        self.n = len(script)
        self.i = 0
        self.commands: list[Command] = []
        self.current = Command()
        self.pending_heredocs: list[tuple[str, bool]] = []
        self.expect_redirect_target = False
        self.at_command_start = True
        self.words = 0
        self.depth = 0

    # -- command boundaries -------------------------------------------------
    def end_command(self) -> None:
        if self.current.words:
            self.commands.append(self.current)
        self.current = Command()
        self.at_command_start = True
        self.expect_redirect_target = False

    def line_error(self, message: str, pos: int) -> ShellSyntaxError:
        line = self.s.count("\n", 0, pos) + 1
        return ShellSyntaxError(f"{message} (script line {line})")

    # -- main loop ----------------------------------------------------------
    def run(self) -> list[Command]:
        s = self.s
        while self.i < self.n:
            c = s[self.i]
            if c in _BLANKS:
                self.i += 1
            elif c == "\\" and s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "\n":
                self.i += 1
                self.end_command()
                self.read_heredoc_bodies()
            elif c == "#":
                nl = s.find("\n", self.i)
                self.i = self.n if nl < 0 else nl
            elif c in _OPERATOR_CHARS:
                self.read_operator()
            else:
                self.read_word_and_classify()
        self.end_command()
        if self.pending_heredocs:
            raise self.line_error("here-document without a body", self.n)
        return self.commands

    def read_operator(self) -> None:
        s, i = self.s, self.i
        c = s[i]
        if c in "<>":
            self.read_redirection(i)
            return
        if c == "&" and s.startswith("&>", i):
            self.i = i + (3 if s.startswith("&>>", i) else 2)
            self.expect_redirect_target = True
            return
        for op in (";;&", ";;", ";&", "&&", "||", "|&"):
            if s.startswith(op, i):
                self.i = i + len(op)
                self.end_command()
                return
        self.i = i + 1
        self.end_command()

    def read_redirection(self, i: int) -> None:
        s = self.s
        if s.startswith("<<<", i):
            self.i = i + 3
        elif s.startswith("<<", i):
            strip = s.startswith("<<-", i)
            self.i = i + (3 if strip else 2)
            while self.i < self.n and s[self.i] in _BLANKS:
                self.i += 1
            word = self.read_word()
            delimiter = word.literal if word.literal is not None else word.text
            self.pending_heredocs.append((delimiter, strip))
            return
        elif s.startswith((">>", "<&", ">&", "<>", ">|"), i):
            self.i = i + 2
        elif s.startswith(("<(", ">("), i):
            # process substitution: an opaque word
            end = self._skip_parens(i + 2)
            self.add_word(Word(i, end, s[i:end], None, ""))
            self.i = end
            return
        else:
            self.i = i + 1
        self.expect_redirect_target = True

    def read_heredoc_bodies(self) -> None:
        s = self.s
        for delimiter, strip in self.pending_heredocs:
            while True:
                if self.i >= self.n:
                    raise self.line_error(f"here-document delimited by {delimiter!r} never ends", self.i)
                nl = s.find("\n", self.i)
                line_end = self.n if nl < 0 else nl
                line = s[self.i : line_end]
                self.i = line_end + 1 if nl >= 0 else self.n
                if (line.lstrip("\t") if strip else line) == delimiter:
                    break
        self.pending_heredocs = []

    def add_word(self, word: Word) -> None:
        self.words += 1  # redirection targets count too: they cost as much to read
        if self.words > MAX_SCRIPT_WORDS:
            raise ShellLimitError(
                f"the script has more than {MAX_SCRIPT_WORDS} words, the most the webhook reads; "
                f"move the setup into a file in the image or a ConfigMap and keep the vLLM line in the script"
            )
        if self.expect_redirect_target:
            self.expect_redirect_target = False
            return
        self.current.words.append(word)

    def read_word_and_classify(self) -> None:
        word = self.read_word()
        # `2>file`, `{fd}>file`: a descriptor number glued to a redirection
        if self.i < self.n and self.s[self.i] in "<>" and re.fullmatch(r"\d+|\{[A-Za-z_]\w*\}", word.text):
            self.read_redirection(self.i)
            return
        if self.at_command_start and not self.current.words and word.literal is not None:
            if word.literal in _RESERVED_SKIP:
                return
            if word.literal in _RESERVED_END:
                self.end_command()
                return
            if word.literal in _RESERVED_COMPOUND:
                self.current.compound = True
        self.add_word(word)
        self.at_command_start = False

    # -- words ----------------------------------------------------------------
    def read_word(self) -> Word:
        s, n = self.s, self.n
        start = self.i
        run = _PLAIN_RUN.match(s, start)
        if run is not None and (run.end() == n or s[run.end()] in _WORD_END):  # the usual plain word
            self.i = run.end()
            text = run.group()
            return Word(start, self.i, text, text, text)
        out: list[str] = []
        dynamic = False
        prefix_done = False
        prefix: list[str] = []

        def mark_dynamic() -> None:
            nonlocal dynamic, prefix_done
            dynamic = True
            prefix_done = True

        def emit(text: str) -> None:
            out.append(text)
            if not prefix_done:
                prefix.append(text)

        i = self.i
        plain = _PLAIN_RUN.match
        while i < n:
            run = plain(s, i)
            if run is not None:
                emit(run.group())
                i = run.end()
                continue
            c = s[i]
            if c in _BLANKS or c == "\n" or c in _OPERATOR_CHARS:
                break
            if c == "\\":
                if i + 1 >= n:
                    emit("\\")
                    i += 1
                elif s[i + 1] == "\n":
                    i += 2
                else:
                    emit(s[i + 1])
                    i += 2
            elif c == "'":
                end = s.find("'", i + 1)
                if end < 0:
                    raise self.line_error("unterminated single quote", i)
                emit(s[i + 1 : end])
                i = end + 1
            elif c == '"':
                i = self._read_double_quoted(i, emit, mark_dynamic)
            elif c == "$":
                nxt = s[i + 1] if i + 1 < n else ""
                if nxt == "'":
                    end = self._skip_ansi_c(i + 2)
                    mark_dynamic()
                    i = end
                elif nxt == "(" or nxt == "{":
                    i = self._skip_dollar(i)
                    mark_dynamic()
                elif nxt and (nxt.isalnum() or nxt in "_@*#?$!-"):
                    i = self._skip_dollar(i)
                    mark_dynamic()
                else:
                    emit("$")
                    i += 1
            elif c == "`":
                i = self._skip_backtick(i)
                mark_dynamic()
            elif c in "*?[":
                # a glob: the value depends on the file system
                emit(c)
                mark_dynamic()
                i += 1
            else:
                emit(c)
                i += 1
        self.i = i
        text = s[start:i]
        all_positional = text in ('"$@"', "$@", '"${@}"', "${@}", "$*", '"$*"', "${*}", '"${*}"')
        return Word(start, i, text, None if dynamic else "".join(out), "".join(prefix), all_positional)

    def _read_double_quoted(self, i: int, emit: _Emit, mark_dynamic: _Mark) -> int:
        s, n = self.s, self.n
        j = i + 1
        plain = _PLAIN_IN_DOUBLE.match
        while j < n:
            run = plain(s, j)
            if run is not None:
                emit(run.group())
                j = run.end()
                continue
            c = s[j]
            if c == '"':
                return j + 1
            if c == "\\" and j + 1 < n:
                nxt = s[j + 1]
                if nxt == "\n":
                    j += 2
                    continue
                emit(nxt if nxt in '$`"\\' else "\\" + nxt)
                j += 2
            elif c == "$":
                nxt = s[j + 1] if j + 1 < n else ""
                if nxt in ("(", "{") or (nxt and (nxt.isalnum() or nxt in "_@*#?$!-")):
                    j = self._skip_dollar(j)
                    mark_dynamic()
                else:
                    emit("$")
                    j += 1
            elif c == "`":
                j = self._skip_backtick(j)
                mark_dynamic()
            else:
                emit(c)
                j += 1
        raise self.line_error("unterminated double quote", i)

    def _skip_ansi_c(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n:
            if s[i] == "\\":
                i += 2
            elif s[i] == "'":
                return i + 1
            else:
                i += 1
        raise self.line_error("unterminated $'...' quote", i)

    def _skip_backtick(self, i: int) -> int:
        s, n = self.s, self.n
        j = i + 1
        while j < n:
            if s[j] == "\\":
                j += 2
            elif s[j] == "`":
                return j + 1
            else:
                j += 1
        raise self.line_error("unterminated backtick command substitution", i)

    def _skip_dollar(self, i: int) -> int:
        """Skip an expansion starting at `$`; return the index after it."""
        s, n = self.s, self.n
        nxt = s[i + 1]
        if nxt == "(":
            return self._skip_parens(i + 2)
        if nxt == "{":
            return self._skip_braces(i + 2)
        if nxt.isdigit() or nxt in "@*#?$!-":
            return i + 2
        j = i + 1
        while j < n and (s[j].isalnum() or s[j] == "_"):
            j += 1
        return j

    def _skip_nested(self, i: int, open_c: str, close_c: str, what: str) -> int:
        self.depth += 1
        if self.depth > MAX_NESTING:
            line = self.s.count("\n", 0, i) + 1
            raise ShellLimitError(
                f"expansions in the script nest deeper than {MAX_NESTING} levels (script line {line}), "
                f"the deepest the webhook reads; compute the inner values in separate variables first"
            )
        end = self._skip_nested_body(i, open_c, close_c, what)
        self.depth -= 1
        return end

    def _skip_nested_body(self, i: int, open_c: str, close_c: str, what: str) -> int:
        s, n = self.s, self.n
        depth = 1
        j = i
        while j < n:
            c = s[j]
            if c == "\\":
                j += 2
                continue
            if c == "'" and open_c == "(":
                end = s.find("'", j + 1)
                if end < 0:
                    break
                j = end + 1
                continue
            if c == '"':
                j = self._skip_plain_double(j)
                continue
            if c == "`":
                j = self._skip_backtick(j)
                continue
            if c == "$" and j + 1 < n and s[j + 1] in "({":
                j = self._skip_dollar(j)
                continue
            if c == open_c:
                depth += 1
            elif c == close_c:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise self.line_error(f"unterminated {what}", i)

    def _skip_parens(self, i: int) -> int:
        return self._skip_nested(i, "(", ")", "$( ... ) command substitution")

    def _skip_braces(self, i: int) -> int:
        return self._skip_nested(i, "{", "}", "${ ... } expansion")

    def _skip_plain_double(self, i: int) -> int:
        s, n = self.s, self.n
        j = i + 1
        while j < n:
            c = s[j]
            if c == "\\":
                j += 2
            elif c == '"':
                return j + 1
            elif c == "$" and j + 1 < n and s[j + 1] in "({":
                j = self._skip_dollar(j)
            elif c == "`":
                j = self._skip_backtick(j)
            else:
                j += 1
        raise self.line_error("unterminated double quote", i)


def parse(script: str) -> list[Command]:
    """Split a script into simple commands.

    Raises ShellSyntaxError, or its ShellLimitError when the script is beyond a limit above
    (checked before any work for the length, as it is read for the others)."""
    if len(script) > MAX_SCRIPT_LENGTH:
        raise ShellLimitError(
            f"the script is {len(script):,} characters long, over the {MAX_SCRIPT_LENGTH:,} the webhook reads; "
            f"move the setup into a file in the image or a ConfigMap and keep the vLLM line in the script"
        )
    return _Lexer(script).run()


def blank_start(script: str, pos: int) -> int:
    """Where the blanks and line continuations before `pos` begin.

    Deleting [blank_start(s, w.start), w.end) removes a word together with the
    separator before it and keeps whatever follows (a continuation, a newline).
    """
    j = pos
    while j > 0:
        if script[j - 1] in _BLANKS:
            j -= 1
        elif j >= 2 and script[j - 2 : j] == "\\\n":
            j -= 2
        else:
            break
    return j


def continuation_style(script: str, word_start: int) -> str:
    """How to separate a new argument appended after the word at `word_start`.

    When that word sits on a line continued from the one before (the usual
    one-flag-per-line layout), new flags get their own continued lines with
    the same indentation; otherwise a single space.
    """
    line_start = script.rfind("\n", 0, word_start) + 1
    line = script[line_start:word_start]
    indent = line[: len(line) - len(line.lstrip(_BLANKS))]
    if line_start >= 2 and script[line_start - 2 : line_start] == "\\\n":
        return " \\\n" + indent
    return " "


def splice(script: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply non-overlapping (start, end, replacement) edits."""
    out: list[str] = []
    pos = 0
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1])):
        if start < pos:
            raise ValueError("overlapping script edits")
        out.append(script[pos:start])
        out.append(text)
        pos = end
    out.append(script[pos:])
    return "".join(out)
