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


def parse_document(text: str, file: str) -> Document:
    """Parse one YAML document, keeping key lines; duplicate keys are errors.

    Raises:
        ProblemsError: the text is not one well-formed YAML document.
    """
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as err:
        line = text[: err.position].count("\n") + 1
        raise ProblemsError([Problem(file, line, f"invalid YAML: {err.reason}")]) from None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        raise ProblemsError([Problem(file, line, f"invalid YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise ProblemsError([Problem(file, 1, f"invalid YAML: {err}")]) from None
    finally:
        loader.dispose()
    doc = Document(file=file, text=text, data=None)
    if node is None:
        doc.data = None
        return doc
    problems: list[Problem] = []
    doc.data = _convert(node, (), doc, loader, problems)
    if problems:
        raise ProblemsError(problems)
    return doc


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
            except yaml.YAMLError:
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
        return None


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
