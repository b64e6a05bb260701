"""Reading YAML (and JSON, which is YAML) input with bounded work.

PyYAML's safe loader shares the object an alias points to instead of copying
it, so a few hundred bytes of nested aliases ("billion laughs") load at once
but become gigabytes the moment anything walks them (`-o json`, the engine).
It also composes nested collections by recursion and converts integers of any
length. This reader refuses, with a `YAMLLimitError` naming the limit:

- aliases that expand a document to more than `MAX_ALIAS_EXPANSION` times the
  nodes written (and more than `MIN_NODES_CHECKED` nodes), or that refer to
  themselves (a cycle no JSON can hold);
- nesting deeper than `MAX_NESTING`;
- integers longer than `MAX_INTEGER_DIGITS` digits.

Kubernetes' own reader applies the same idea: go-yaml refuses "document
contains excessive aliasing" (gopkg.in/yaml.v3 `decode.go`, `allowedAliasRatio`, v3.0.1).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_ALIAS_EXPANSION = 10
"""How many times the nodes written a document may become once its aliases are expanded."""
MIN_NODES_CHECKED = 100_000
"""Documents that expand to fewer nodes than this are never refused for aliasing."""
MAX_NESTING = 100
"""The deepest nesting of mappings and sequences; Kubernetes objects nest a few dozen levels."""
MAX_INTEGER_DIGITS = 100
"""The longest integer read as a number; no field of these objects holds more than 20 digits."""


class YAMLLimitError(yaml.YAMLError):
    """The input is beyond one of the limits above; the message names it."""


class _Loader(yaml.SafeLoader):
    """The safe loader with a depth count while composing and a length check on integers."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise YAMLLimitError(f"line {mark.line + 1}: collections nest deeper than {MAX_NESTING} levels, the most "
                                 f"this reader takes")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value).replace("_", "")
        if len(text.lstrip("+-0")) > MAX_INTEGER_DIGITS:
            raise YAMLLimitError(f"line {node.start_mark.line + 1}: a number of {len(text):,} digits, longer than the "
                                 f"{MAX_INTEGER_DIGITS} this reader takes; quote it if it is text")
        value: int = super().construct_yaml_int(node)
        return value


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(nodes written, nodes once every alias is expanded) of one document; YAMLLimitError for a cycle.

    Iterative and linear in the nodes written: each node's expanded size is computed once."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            continue
        if key in size:
            continue
        if key in on_path:
            raise YAMLLimitError(f"line {node.start_mark.line + 1}: an alias refers to the collection it is in")
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise YAMLLimitError(f"line {child.start_mark.line + 1}: an alias refers to the collection it is in")
            if id(child) not in size:
                stack.append((child, False))
    return len(size), size[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_all(text: str) -> list[Any]:
    """Every document of `text`, as plain data; yaml.YAMLError (YAMLLimitError beyond a limit) when unreadable."""
    loader = _Loader(text)
    try:
        documents: list[Any] = []
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            written, expanded = _expanded_size(node)
            if expanded > MIN_NODES_CHECKED and expanded > MAX_ALIAS_EXPANSION * written:
                raise YAMLLimitError(
                    f"its aliases expand a document of {written:,} nodes to {expanded:,}, more than "
                    f"{MAX_ALIAS_EXPANSION} times what is written; write the repeated parts out or drop the aliases"
                )
            documents.append(loader.construct_document(node))
        return documents
    finally:
        loader.dispose()
