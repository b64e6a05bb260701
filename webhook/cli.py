"""The `ep-webhook` command line: a thin shell around the core.

Exit codes of `mutate`: 0 allowed (warnings on stderr), 1 denied (the reason
on stderr), 2 usage errors or unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

import jsonpatch
import yaml

from webhook.engine import mutate
from webhook.settings import Options

EXIT_ALLOWED, EXIT_DENIED, EXIT_USAGE = 0, 1, 2


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as `|` blocks, so they stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


class InputError(Exception):
    """The input could not be read or parsed as one document."""


def read_document(path: str, stdin: TextIO) -> object:
    try:
        if path == "-":
            text = stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from e
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise InputError(f"{path} is neither YAML nor JSON: {e}") from e
    if len(docs) != 1:
        raise InputError(f"{path} holds {len(docs)} documents; give exactly one InferenceService")
    return docs[0]


def render(obj: object, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def cmd_mutate(ns: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    try:
        obj = read_document(ns.file, stdin)
    except InputError as e:
        print(f"error: {e}", file=stderr)
        return EXIT_USAGE
    verdict = mutate(obj, Options(on_conflict=ns.on_conflict))
    if not verdict.allowed:
        print(f"denied: {verdict.message}", file=stderr)
        return EXIT_DENIED
    for w in verdict.warnings:
        print(f"warning: {w}", file=stderr)
    if ns.output == "patch":
        stdout.write(json.dumps(list(verdict.patch), indent=2, ensure_ascii=False) + "\n")
    else:
        result = jsonpatch.apply_patch(obj, list(verdict.patch)) if verdict.patch else obj
        stdout.write(render(result, ns.output))
    return EXIT_ALLOWED


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ep-webhook", description="vLLM expert-parallel webhook for KServe")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("mutate", help="apply the webhook to an InferenceService offline")
    m.add_argument("-f", "--file", required=True, help="YAML or JSON file; - reads stdin")
    m.add_argument("-o", "--output", choices=("yaml", "json", "patch"), default="yaml")
    m.add_argument(
        "--on-conflict",
        choices=("override", "reject"),
        default="override",
        help="hand-written TP/DP/EP flags that disagree: fix them (override) or deny (reject)",
    )
    return p


def main(
    argv: Sequence[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        ns = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_ALLOWED
    if ns.command == "mutate":
        return cmd_mutate(ns, stdin, stdout, stderr)
    return EXIT_USAGE
