"""Load a directory of rule files into one validated Bundle, or report every problem."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from marshmallow import Schema, ValidationError

from policyd.collector import collector_paused
from policyd.domain import Outcome
from policyd.rules.catalog import (
    is_catalog_file,
    link_catalogs,
    load_catalogs,
    managed_packages,
)
from policyd.rules.compiler import EngineLimitError, compile_bundle
from policyd.rules.condition import Cmp, canon_text, referenced_packages
from policyd.rules.model import (
    SOD_GROUP,
    SOD_PACKAGE,
    AccessPackage,
    Bundle,
    Catalog,
    Rule,
    Version,
)
from policyd.rules.schema import RuleFileSchema
from policyd.rules.source import (
    Document,
    Problem,
    ProblemsError,
    flatten_messages,
    parse_document,
)
from policyd.rules.template import GeneratedDocument, expand, is_row_file, is_template
from policyd.rules.validator import MEMO_SIZE, CompiledSchema, Invalid
from policyd.rules.version import content_hash, git_state

TESTS_DIR = "tests"
SUFFIXES = (".yaml", ".yml", ".csv")  # .csv: template rows


def rule_files(root: Path) -> list[Path]:
    """Rule files below `root` (and the CSV files of template rows): YAML files outside hidden
    folders and `tests/`."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        if relative.parts[0] == TESTS_DIR or any(p.startswith(".") for p in relative.parts):
            continue
        found.append(path)
    return found


def load_bundle(directory: str | Path) -> Bundle:
    """Read, validate and link every rule file below `directory`.

    Raises:
        ProblemsError: with every problem in every file; nothing is half-loaded.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ProblemsError([Problem(str(root), 0, "no such directory")])
    texts = {}
    for path in rule_files(root):
        try:
            texts[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ProblemsError([Problem(str(path), 0, f"cannot read: {err}")]) from None
    bundle = load_texts(texts, display_root=str(root))
    commit, dirty = git_state(root)
    version = dataclasses.replace(bundle.version, git_commit=commit, git_dirty=dirty)
    return dataclasses.replace(bundle, version=version)


def load_texts(texts: Mapping[str, str], display_root: str = "") -> Bundle:
    """Build a Bundle from rule-file texts keyed by relative path (no file system).

    Raises:
        ProblemsError: with every problem found.
    """
    with collector_paused():
        return _load_texts(texts, display_root)


def _load_texts(texts: Mapping[str, str], display_root: str) -> Bundle:
    if not texts:
        raise ProblemsError([Problem(display_root or ".", 0, "no rule files (*.yaml) found")])
    problems: list[Problem] = []
    documents: list[Document] = []
    packages: list[tuple[AccessPackage, Document]] = []
    catalogs: list[Catalog] = []
    # one for every file: building its nested schemas costs more
    schema = CompiledSchema(RuleFileSchema())
    placed: dict[tuple[int, int], tuple[Any, Any]] = {}
    for relative, text in sorted(texts.items()):
        if is_row_file(relative):
            continue  # read by the template that names it
        shown = f"{display_root.rstrip('/')}/{relative}" if display_root else relative
        try:
            document = parse_document(text, shown)
        except ProblemsError as err:
            problems.extend(err.problems)
            continue
        documents.append(document)
        if is_template(document):
            generated = expand(document, texts, relative, problems)
            documents.extend(generated)  # the version covers the rows too
            packages.extend(_generated_packages(generated, schema, problems, placed))
            continue
        if is_catalog_file(document):
            catalogs.extend(load_catalogs(document, problems, _plain))
            continue
        package = _load_package(document, schema, problems, placed)
        if package is not None:
            packages.append((package, document))
    problems.extend(_link(packages))
    by_catalog, catalog_problems = link_catalogs(catalogs, packages)
    problems.extend(catalog_problems)
    if problems:
        raise ProblemsError(problems)
    by_id = {package.id: package for package, _ in packages}
    declared_by: dict[str, list[str]] = defaultdict(list)  # package -> who lists it
    for package in by_id.values():
        for other in package.incompatible_with:
            declared_by[other].append(package.id)
    by_id = {
        pid: _with_incompatibility_rules(package, by_id, declared_by[pid])
        for pid, package in by_id.items()
    }
    bundle = Bundle(
        packages=by_id,
        version=_version(documents),
        files=dict(texts),
        catalogs=by_catalog,
        managed=managed_packages(by_id.values()),
        reminders={pid: p.reminders for pid, p in by_id.items() if p.reminders is not None},
    )
    _check_engine_limits(bundle, display_root)
    return bundle


def _check_engine_limits(bundle: Bundle, display_root: str) -> None:
    """Refuse, at load time, what durable_rules would fail on at decision time."""
    try:
        compile_bundle(bundle)
    except EngineLimitError as err:
        where, line = display_root or min(bundle.files), 0
        if err.package:
            package = bundle.packages[err.package]
            where = package.file
            if err.rule:
                line = package.rule(err.rule).line
        raise ProblemsError([Problem(where, line, str(err))]) from None


def _load_package(
    document: Document,
    schema: CompiledSchema,
    problems: list[Problem],
    placed: dict[tuple[int, int], tuple[Any, Any]],
    **extra: Any,
) -> AccessPackage | None:
    """The package of `document` with its rules' and resources' lines (and `extra` fields),
    or None with its problems added to `problems`.

    `placed` remembers each rule and resource put at a line: the packages of a template's
    rows share the rules without placeholders, and so their placed copies.
    """
    if not isinstance(document.data, dict):
        problems.append(
            document.problem((), "a rule file is a mapping with apiVersion and package")
        )
        return None
    try:
        loaded = schema.load(document.data)
    except Invalid:
        problems.extend(_schema_problems(document, schema.schema))
        return None
    package: AccessPackage = loaded["package"]
    rules = tuple(
        _at_line(rule, document.line_of(("package", "rules", index)), placed)
        for index, rule in enumerate(package.rules)
    )
    resources = tuple(
        _at_line(resource, document.line_of(("package", "resources", index)), placed)
        for index, resource in enumerate(package.resources)
    )
    return dataclasses.replace(
        package, rules=rules, resources=resources, file=document.file, **extra
    )


def _at_line(item: Any, line: int, placed: dict[tuple[int, int], tuple[Any, Any]]) -> Any:
    """`item` (a frozen Rule or Resource) with its line set, made once per item and line."""
    known = placed.get((id(item), line))
    if known is not None and known[0] is item:
        return known[1]
    made = dataclasses.replace(item, line=line)
    if len(placed) >= MEMO_SIZE:
        placed.clear()
    placed[(id(item), line)] = (item, made)  # holding `item` keeps its id from being reused
    return made


def _schema_problems(document: Document, schema: Schema) -> list[Problem]:
    """Every problem marshmallow finds in a document found invalid, in its own words."""
    try:
        schema.load(document.data)
    except ValidationError as err:
        problems = [
            document.problem(path, _plain(message))
            for path, message in flatten_messages(err.messages)
        ]
        return problems + _duplicate_rule_ids(document)
    raise AssertionError(f"{document.file}: CompiledSchema and its schema disagree")


def _generated_packages(
    generated: list[GeneratedDocument],
    schema: CompiledSchema,
    problems: list[Problem],
    placed: dict[tuple[int, int], tuple[Any, Any]],
) -> list[tuple[AccessPackage, Document]]:
    """The packages a template's rows made, each marked with the template and its row."""
    made = []
    for document in generated:
        origin = document.origin
        if origin is None:
            continue
        package = _load_package(
            document, schema, problems, placed, template=origin.template, template_row=origin.row
        )
        if package is not None:
            made.append((package, document))
    return made


def _duplicate_rule_ids(document: Document) -> list[Problem]:
    """Duplicate rule ids in a file that failed validation, so one run reports them too."""
    package = document.data.get("package")
    rules = package.get("rules") if isinstance(package, dict) else None
    if not isinstance(rules, list):
        return []
    seen: set[str] = set()
    found = []
    for index, rule in enumerate(rules):
        rule_id = rule.get("id") if isinstance(rule, dict) else None
        if isinstance(rule_id, str) and rule_id in seen:
            where = ("package", "rules", index, "id")
            found.append(document.problem(where, f"duplicate rule id {rule_id!r}"))
        elif isinstance(rule_id, str):
            seen.add(rule_id)
    return found


def _plain(message: str) -> str:
    if message == "Unknown field.":
        return "unknown key (check its spelling; see docs/rules.md)"
    if message == "Missing data for required field.":
        return "required key is missing"
    return message


def _link(packages: list[tuple[AccessPackage, Document]]) -> list[Problem]:
    """Checks that need more than one rule or file: unique ids and references."""
    problems: list[Problem] = []
    seen: dict[str, AccessPackage] = {}
    for package, document in packages:
        if package.id in seen:
            first = seen[package.id]
            problems.append(
                document.problem(
                    ("package", "id"), f"duplicate package id {package.id!r} (also in {first.file})"
                )
            )
        else:
            seen[package.id] = package
    for package, document in packages:
        rule_ids: set[str] = set()
        for index, rule in enumerate(package.rules):
            where = ("package", "rules", index)
            if rule.id in rule_ids:
                problems.append(document.problem((*where, "id"), f"duplicate rule id {rule.id!r}"))
            rule_ids.add(rule.id)
            for ref in referenced_packages(rule.when):
                if ref not in seen:
                    problems.append(document.problem((*where, "when"), f"unknown package {ref!r}"))
            if _uses_owners(rule) and not package.owners:
                problems.append(
                    document.problem(
                        (*where, "then", "approval"),
                        "approver 'owners' needs package.owners",
                    )
                )
            if rule.outcome is not Outcome.DENY and rule.lifetime is None and not package.lifetime:
                problems.append(
                    document.problem(
                        (*where, "then"),
                        f"{rule.outcome} needs a lifetime (in the rule or in package.lifetime)",
                    )
                )
        for index, other in enumerate(package.incompatible_with):
            where = ("package", "incompatibleWith", index)
            if other not in seen:
                problems.append(document.problem(where, f"unknown package {other!r}"))
            elif other == package.id:
                problems.append(
                    document.problem(where, "a package cannot be incompatible with itself")
                )
    return problems


def _uses_owners(rule: Rule) -> bool:
    if rule.approval is None:
        return False
    return any(
        "owners" in stage.approvers or "owners" in stage.escalate_to
        for stage in rule.approval.stages
    )


def _with_incompatibility_rules(
    package: AccessPackage, packages: Mapping[str, AccessPackage], declared_by: Sequence[str]
) -> AccessPackage:
    """Add a deny rule per incompatible package, declared on either side (`declared_by`: the
    packages that list this one), and one per incompatible directory group (rule ids in
    policyd.rules.model: SOD_PACKAGE, SOD_GROUP)."""
    others = [*package.incompatible_with, *declared_by]
    extra = []
    for other in dict.fromkeys(others):
        name = packages[other].display_name
        extra.append(
            Rule(
                id=f"{SOD_PACKAGE}{other}",
                outcome=Outcome.DENY,
                when=Cmp("subject.packages", "contains", other),
                reason=f"Holds {name!r} ({other}), which is incompatible with "
                f"{package.display_name!r}",
                synthetic=True,
            )
        )
    for group in dict.fromkeys(package.incompatible_groups):
        extra.append(
            Rule(
                id=f"{SOD_GROUP}{group}",
                outcome=Outcome.DENY,
                when=Cmp("subject.groups", "contains", canon_text(group)),
                reason=f"Member of group {group}, which is incompatible with "
                f"{package.display_name!r}",
                synthetic=True,
            )
        )
    if not extra:
        return package
    return dataclasses.replace(package, rules=package.rules + tuple(extra))


def _version(documents: list[Document]) -> Version:
    return Version(content_hash=content_hash(d.data for d in documents))
