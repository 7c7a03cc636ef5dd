"""Templates: one rule file that stamps out packages from rows of parameters.

A template is data with substitution, not a programming language: every `${name}` in a text
value of the template's packages is replaced by the row's value of parameter `name` (with an
optional filter: `${name|lower}`, `${name|upper}`, `${name|slug}`). Nothing is evaluated;
there are no loops, conditions or expressions. Each row yields ordinary package documents,
which the loader validates, links and compiles like hand-written ones; their errors name the
template's line and the row (file and line of the row).

    apiVersion: policyd/v1
    template:
      id: scope-readers
      parameters: [scope]
      rowsFrom: scopes.csv            # or `rows: [{scope: ScopeA}, ...]`
      packages:
        - id: "${scope|slug}-readers"
          displayName: "${scope} readers"
          ...
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from policyd.rules.apiversion import api_version_problem
from policyd.rules.model import API_VERSION
from policyd.rules.source import Document, Path, Problem, ProblemsError, parse_document

PLACEHOLDER = re.compile(r"\$\{([^}|]*)(?:\|([^}]*))?\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TEMPLATE_ID = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")
FILTERS = {
    "lower": str.lower,
    "upper": str.upper,
    "slug": lambda text: re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-"),
}
MAX_PACKAGES = 200_000  # rows x packages one template may make
MAX_VALUE = 200  # characters of one parameter value
ROW_SUFFIXES = (".csv", ".yaml", ".yml")
KEYS = {"id", "description", "parameters", "rows", "rowsFrom", "packages"}


@dataclass(frozen=True)
class Row:
    """One row of parameters and where it was written."""

    values: dict[str, str]
    file: str
    line: int

    def __str__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"row {self.file}:{self.line} ({shown})"


@dataclass(frozen=True)
class Origin:
    """Where a generated package came from: the template and the row."""

    template: str
    file: str  # the template's path in the bundle
    row: str  # "scopes.csv:4", relative to the bundle too


@dataclass
class GeneratedDocument(Document):
    """A package document made from a template row: lines are the template's, and every
    problem names the row as well."""

    row: Row | None = None
    origin: Origin | None = None

    def problem(self, path: Path, message: str) -> Problem:
        found = super().problem(path, message)
        return Problem(found.file, found.line, f"{found.message} [{self.row}]", found.where)


def is_template(document: Document) -> bool:
    return isinstance(document.data, dict) and "template" in document.data


def is_row_file(relative: str) -> bool:
    """Whether a bundle file holds template rows rather than rules: CSV files, and YAML files
    named *.rows.yaml."""
    name = PurePosixPath(relative).name
    return name.endswith(".csv") or name.endswith((".rows.yaml", ".rows.yml"))


def expand(
    document: Document, files: Mapping[str, str], relative: str, problems: list[Problem]
) -> list[GeneratedDocument]:
    """The package documents `document` (a template) stamps out, one per row and package.
    Problems are appended to `problems`; a template with any problem makes nothing.

    `files` are the bundle's texts by relative path; `relative` is the template's own, against
    which `rowsFrom` is resolved.
    """
    found: list[Problem] = []
    spec = document.data.get("template")
    version_problem = api_version_problem(document.data.get("apiVersion"))
    if version_problem is not None:
        found.append(document.problem(("apiVersion",), version_problem))
    extra = sorted(set(document.data) - {"apiVersion", "template"})
    for key in extra:
        found.append(
            document.problem((key,), "unknown key (check its spelling; see docs/rules.md)")
        )
    if not isinstance(spec, dict):
        found.append(document.problem(("template",), "a template is a mapping"))
        problems.extend(found)
        return []
    for key in sorted(set(spec) - KEYS):
        found.append(document.problem(("template", key), "unknown key"))
    template_id = spec.get("id")
    if not isinstance(template_id, str) or not TEMPLATE_ID.match(template_id):
        found.append(document.problem(("template", "id"), "a template needs an id (a slug)"))
    parameters = _parameters(document, spec.get("parameters"), found)
    packages = spec.get("packages")
    if not isinstance(packages, list) or not packages:
        found.append(document.problem(("template", "packages"), "list the packages to make"))
        packages = []
    rows = _rows(document, spec, files, relative, parameters, found)
    for index, package in enumerate(packages):
        _check_placeholders(document, package, ("template", "packages", index), parameters, found)
    if len(rows) * len(packages) > MAX_PACKAGES:
        message = f"{len(rows)} rows x {len(packages)} packages exceed {MAX_PACKAGES:,} packages"
        found.append(document.problem(("template",), message))
    if found:
        problems.extend(found)
        return []
    return _stamp(document, template_id, spec.get("rowsFrom"), relative, rows, packages)


def _stamp(
    document: Document,
    template_id: str,
    source: str | None,
    relative: str,
    rows: list[Row],
    packages: list[Any],
) -> list[GeneratedDocument]:
    """One package document per row and package of a template that has no problem.

    The parts of a package that hold no placeholder are the same objects in every row's
    document (nothing changes a parsed document), and so are the line numbers.
    """
    made = []
    # Origins name files relative to the bundle, as stored versions do (not this machine's).
    rows_file = relative if source is None else (PurePosixPath(relative).parent / source)
    stampers = [_stamper(package) for package in packages]
    lines = [_package_lines(document, ("template", "packages", n)) for n in range(len(packages))]
    for row in rows:
        origin = Origin(template_id, relative, f"{PurePosixPath(rows_file).as_posix()}:{row.line}")
        for package, stamp, package_lines in zip(packages, stampers, lines, strict=True):
            generated = GeneratedDocument(
                file=document.file,
                text=document.text,
                data={
                    "apiVersion": API_VERSION,
                    "package": package if stamp is None else stamp(row.values),
                },
                lines=package_lines,
                row=row,
                origin=origin,
            )
            made.append(generated)
    return made


def _package_lines(document: Document, prefix: Path) -> dict[Path, int]:
    """The lines of the template package at `prefix`, as those of a package document."""
    lines: dict[Path, int] = {
        ("package", *path[len(prefix) :]): line
        for path, line in document.lines.items()
        if path[: len(prefix)] == prefix
    }
    return lines | {(): document.line_of(prefix)}


def _parameters(document: Document, raw: Any, found: list[Problem]) -> list[str]:
    where = ("template", "parameters")
    if not isinstance(raw, list) or not raw:
        found.append(document.problem(where, "list the parameter names, e.g. [scope]"))
        return []
    names = []
    for index, name in enumerate(raw):
        if not isinstance(name, str) or not NAME.match(name):
            found.append(document.problem((*where, index), f"{name!r} is not a parameter name"))
        elif name in names:
            found.append(document.problem((*where, index), f"duplicate parameter {name!r}"))
        else:
            names.append(name)
    return names


def _rows(
    document: Document,
    spec: dict[str, Any],
    files: Mapping[str, str],
    relative: str,
    parameters: list[str],
    found: list[Problem],
) -> list[Row]:
    inline, source = spec.get("rows"), spec.get("rowsFrom")
    if (inline is None) == (source is None):
        found.append(document.problem(("template",), "give exactly one of rows and rowsFrom"))
        return []
    if inline is not None:
        if not isinstance(inline, list):
            found.append(document.problem(("template", "rows"), "rows is a list of mappings"))
            return []
        raw = [
            (item, document.file, document.line_of(("template", "rows", i)))
            for i, item in enumerate(inline)
        ]
    else:
        raw = _rows_from(document, source, files, relative, found)
    rows = []
    seen: dict[tuple[str, ...], Row] = {}
    for item, file, line in raw:
        row = _row(item, file, line, parameters, found)
        if row is None:
            continue
        key = tuple(row.values[name] for name in parameters)
        if key in seen:
            found.append(Problem(file, line, f"the same parameters as {seen[key]}"))
            continue
        seen[key] = row
        rows.append(row)
    if not rows and not found:
        found.append(document.problem(("template",), "the template has no rows"))
    return rows


def _rows_from(
    document: Document,
    source: Any,
    files: Mapping[str, str],
    relative: str,
    found: list[Problem],
) -> list[tuple[Any, str, int]]:
    where = ("template", "rowsFrom")
    if not isinstance(source, str) or not is_row_file(source) or ".." in source.split("/"):
        message = "rowsFrom names a .csv or .rows.yaml file beside the template"
        found.append(document.problem(where, message))
        return []
    path = (PurePosixPath(relative).parent / source).as_posix()
    text = files.get(path)
    shown = str(PurePosixPath(document.file).parent / source)
    if text is None:
        found.append(document.problem(where, f"no file {source!r} beside the template"))
        return []
    if source.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        try:
            for item in reader:
                rows.append((item, shown, reader.line_num))
        except csv.Error as err:
            found.append(Problem(shown, reader.line_num, f"invalid CSV: {err}"))
        return rows
    try:
        parsed = parse_document(text, shown)
    except ProblemsError as err:
        found.extend(err.problems)
        return []
    if not isinstance(parsed.data, list):
        found.append(Problem(shown, 1, "a rows file is a YAML list of mappings"))
        return []
    return [(item, shown, parsed.line_of((i,))) for i, item in enumerate(parsed.data)]


def _row(
    item: Any, file: str, line: int, parameters: list[str], found: list[Problem]
) -> Row | None:
    if not isinstance(item, dict):
        found.append(Problem(file, line, "a row is a mapping of parameter -> value"))
        return None
    values = {}
    problems = []
    for name in parameters:
        value = item.get(name)
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            problems.append(f"parameter {name!r} needs a text value")
            continue
        text = str(value).strip()
        if not text:
            problems.append(f"parameter {name!r} needs a text value")
        elif len(text) > MAX_VALUE or "${" in text:
            problems.append(f"parameter {name!r}: at most {MAX_VALUE} characters, no ${{")
        else:
            values[name] = text
    if None in item:  # csv.DictReader: more values than the header has columns
        problems.append("more values than the header has columns")
    extra = sorted(str(key) for key in set(item) - set(parameters) if key is not None)
    if extra:
        problems.append(f"unknown parameters {', '.join(extra)}; the template has {parameters}")
    for message in problems:
        found.append(Problem(file, line, message))
    return None if problems else Row(values, file, line)


def _check_placeholders(
    document: Document, value: Any, path: Path, parameters: list[str], found: list[Problem]
) -> None:
    """Every placeholder names a parameter and a known filter (checked once, not per row)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_placeholders(document, item, (*path, key), parameters, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_placeholders(document, item, (*path, index), parameters, found)
    elif isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            name, filter_name = match.group(1), match.group(2)
            if name not in parameters:
                message = f"unknown parameter {name!r} in {match.group(0)}; parameters: "
                found.append(document.problem(path, message + ", ".join(parameters)))
            if filter_name is not None and filter_name not in FILTERS:
                message = f"unknown filter {filter_name!r}; filters: {', '.join(FILTERS)}"
                found.append(document.problem(path, message))


Stamp = Callable[[Mapping[str, str]], Any]


def _stamper(value: Any) -> Stamp | None:
    """A function making `value` with a row's values put in, or None when `value` holds no
    placeholder (it is then used as it is)."""
    if isinstance(value, dict):
        parts = {key: _stamper(item) for key, item in value.items()}
        if all(part is None for part in parts.values()):
            return None
        made = [(key, value[key], part) for key, part in parts.items()]
        return lambda row: {key: item if part is None else part(row) for key, item, part in made}
    if isinstance(value, list):
        items = [(item, _stamper(item)) for item in value]
        if all(part is None for _, part in items):
            return None
        return lambda row: [item if part is None else part(row) for item, part in items]
    if isinstance(value, str) and "${" in value:
        return lambda row: PLACEHOLDER.sub(lambda m: _value(m, row), value)
    return None


def _value(match: re.Match[str], row: Mapping[str, str]) -> str:
    text = row[match.group(1)]
    return FILTERS[match.group(2)](text) if match.group(2) else text
