"""YAML documents that remember the line of every key, for `file:line: message` errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One error found in a rule or test file."""

    file: str
    line: int
    message: str
    where: str = ""  # dotted key path, e.g. package.rules[2].then.decision

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        place = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{place}: {prefix}{self.message}"


class ProblemsError(Exception):
    """Raised with every problem found, never just the first."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.where, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class Document:
    """Parsed YAML plus the line where each key path starts."""

    file: str
    text: str
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def problem(self, path: Path, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), message, format_path(path))


def format_path(path: Path) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


# Bounds of one document, checked while it is composed, before anything is built from it.
# The rule format nests at most about 40 levels (conditions are limited by the engine) and
# directory imports fewer; aliases may share a value, but not multiply a small text into a
# huge one (a "billion laughs" of 1.5 KB expands to 3.4 billion nodes).
MAX_DEPTH = 64  # nested mappings and lists, counting what aliases repeat
MAX_ALIAS_NODES = 10_000  # nodes that aliases repeat, in one document

# libyaml's parser when PyYAML was built with it (about ten times faster); the same events,
# marks and errors either way.
_Loader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


def parse_document(
    text: str,
    file: str,
    *,
    max_depth: int = MAX_DEPTH,
    max_alias_nodes: int = MAX_ALIAS_NODES,
) -> Document:
    """Parse one YAML document, keeping key lines; duplicate keys are errors.

    Nesting deeper than `max_depth` and aliases that repeat more than `max_alias_nodes`
    nodes are refused while the document is composed, so no input costs more memory or
    time than its own size.

    Raises:
        ProblemsError: the text is not one well-formed YAML document within those bounds.
    """
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as err:
        raise ProblemsError([_reader_problem(err, text, file)]) from None
    try:
        node = _Composer(loader, max_depth, max_alias_nodes).single_node()
    except yaml.reader.ReaderError as err:
        raise ProblemsError([_reader_problem(err, text, file)]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise ProblemsError([Problem(file, line, f"invalid YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise ProblemsError([Problem(file, 1, f"invalid YAML: {err}")]) from None
    doc = Document(file=file, text=text, data=None)
    try:
        if node is None:
            return doc
        problems: list[Problem] = []
        doc.data = _convert(node, (), doc, loader, problems)
    finally:
        loader.dispose()
    if problems:
        raise ProblemsError(problems)
    return doc


def _reader_problem(err: yaml.reader.ReaderError, text: str, file: str) -> Problem:
    # libyaml counts the position in UTF-8 bytes, PyYAML's own reader in characters.
    read = text if _Loader is yaml.SafeLoader else text.encode("utf-8")
    line = read[: err.position].count("\n" if isinstance(read, str) else b"\n") + 1
    return Problem(file, line, f"invalid YAML: {err.reason}")


class _Open:
    """A mapping or list being composed."""

    __slots__ = ("anchor", "height", "key", "node", "size")

    def __init__(self, node: yaml.CollectionNode, anchor: str | None):
        self.node = node
        self.anchor = anchor
        self.size = 1  # nodes in it, aliases expanded
        self.height = 0  # deepest child, aliases expanded
        self.key: yaml.Node | None = None  # a mapping's key waiting for its value


class _Composer:
    """PyYAML's composer without recursion, counting depth and alias expansion as it goes.

    Anchors become known when their node is complete, so an alias can never point into
    the node that holds it (a recursive document); an alias shares its node, as in PyYAML.
    """

    def __init__(self, loader, max_depth: int, max_alias_nodes: int):
        self.loader = loader
        self.max_depth = max_depth
        self.max_alias_nodes = max_alias_nodes
        self.repeated = 0
        self.anchors: dict[str, tuple[yaml.Node, int, int]] = {}  # node, size, height
        self.open_anchors: set[str] = set()

    def single_node(self) -> yaml.Node | None:
        loader = self.loader
        loader.get_event()  # stream start
        node = None
        if not loader.check_event(yaml.StreamEndEvent):
            start = loader.get_event()  # document start
            node = self._node()
            loader.get_event()  # document end
            if not loader.check_event(yaml.StreamEndEvent):
                event = loader.get_event()
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream",
                    start.start_mark,
                    "but found another document",
                    event.start_mark,
                )
        loader.get_event()  # stream end
        return node

    def _node(self) -> yaml.Node:
        stack: list[_Open] = []
        loader = self.loader
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                node, size, height = self._alias(event, len(stack))
            elif isinstance(event, yaml.ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
                node = yaml.ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, style=event.style
                )
                size, height = 1, 0
                self._remember(event, node, size, height)
            elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
                if len(stack) >= self.max_depth:
                    self._refuse(event, f"nested deeper than {self.max_depth} levels")
                kind = yaml.SequenceNode
                if isinstance(event, yaml.MappingStartEvent):
                    kind = yaml.MappingNode
                tag = event.tag
                if tag is None or tag == "!":
                    tag = loader.resolve(kind, None, event.implicit)
                node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
                if event.anchor is not None:
                    self._check_new_anchor(event)
                    self.open_anchors.add(event.anchor)
                stack.append(_Open(node, event.anchor))
                continue
            else:  # the end of a sequence or mapping
                done = stack.pop()
                node = done.node
                node.end_mark = event.end_mark
                size, height = done.size, done.height + 1
                if done.anchor is not None:
                    self.open_anchors.discard(done.anchor)
                    self.anchors[done.anchor] = (node, size, height)
            if not stack:
                return node
            parent = stack[-1]
            parent.size += size
            parent.height = max(parent.height, height)
            if isinstance(parent.node, yaml.SequenceNode):
                parent.node.value.append(node)
            elif parent.key is None:
                parent.key = node
            else:
                parent.node.value.append((parent.key, node))
                parent.key = None

    def _alias(self, event, depth: int) -> tuple[yaml.Node, int, int]:
        name = event.anchor
        if name in self.open_anchors:
            self._refuse(event, f"alias *{name} repeats a value that contains it")
        if name not in self.anchors:
            self._refuse(event, f"alias *{name} names no earlier anchor &{name}")
        node, size, height = self.anchors[name]
        if depth + height > self.max_depth:
            self._refuse(
                event,
                f"alias *{name} nests the document deeper than {self.max_depth} levels",
            )
        self.repeated += size
        if self.repeated > self.max_alias_nodes:
            self._refuse(
                event,
                f"aliases repeat more than {self.max_alias_nodes} values in this document; "
                "write the values out instead",
            )
        return node, size, height

    def _remember(self, event, node: yaml.Node, size: int, height: int) -> None:
        if event.anchor is not None:
            self._check_new_anchor(event)
            self.anchors[event.anchor] = (node, size, height)

    def _check_new_anchor(self, event) -> None:
        if event.anchor in self.anchors or event.anchor in self.open_anchors:
            self._refuse(event, f"anchor &{event.anchor} is defined twice")

    @staticmethod
    def _refuse(event, problem: str):
        raise yaml.composer.ComposerError(None, None, problem, event.start_mark)


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _convert(node: yaml.Node, path: Path, doc: Document, loader, problems: list[Problem]) -> Any:
    line = node.start_mark.line + 1
    doc.lines.setdefault(path, line)
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
        problems.append(Problem(doc.file, line, f"invalid YAML: tag {node.tag} is not allowed"))
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            try:
                key = loader.construct_object(key_node, deep=True)
            except (yaml.YAMLError, ValueError, OverflowError):
                key = None
            if not isinstance(key, str | int | float | bool):
                problems.append(
                    Problem(doc.file, key_node.start_mark.line + 1, "keys must be text")
                )
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                line = key_node.start_mark.line + 1
                where = format_path((*path, key))
                problems.append(Problem(doc.file, line, "duplicate key", where))
                continue
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _convert(value_node, (*path, key), doc, loader, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(item, (*path, index), doc, loader, problems)
            for index, item in enumerate(node.value)
        ]
    try:
        return loader.construct_object(node, deep=True)
    except yaml.YAMLError as err:
        problems.append(Problem(doc.file, line, f"invalid YAML: {getattr(err, 'problem', err)}"))
    except (ValueError, OverflowError) as err:
        # Plain scalars that resolve to a type Python cannot hold: a date such as
        # 2026-02-30 or year 0, or an integer of thousands of digits.
        problems.append(Problem(doc.file, line, f"invalid value {_shorten(node.value)}: {err}"))
    return None


def _shorten(text: str, width: int = 40) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def flatten_messages(messages: Any, path: Path = ()) -> list[tuple[Path, str]]:
    """Turn marshmallow's nested error dict into (key path, message) pairs."""
    out: list[tuple[Path, str]] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                out.extend(flatten_messages(value, path))
            else:
                out.extend(flatten_messages(value, (*path, key)))
    elif isinstance(messages, list | tuple):
        for value in messages:
            out.extend(flatten_messages(value, path))
    else:
        out.append((path, str(messages)))
    return out
