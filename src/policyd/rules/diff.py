"""Semantic diff of two bundles: packages, rules and resources compared field by field on the
loaded model, so reformatting, key order, comments and file layout never count."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import isodate

from policyd.domain import Outcome
from policyd.rules.condition import All, AnyOf, Cmp, Condition, Not
from policyd.rules.model import AccessPackage, Bundle, Resource, Rule
from policyd.rules.timing import Window

# Model fields that locate or identify a thing rather than say what it does: a package moved
# to another file, into a template or to another row of its template decides the same.
_PACKAGE_SKIP = frozenset({"id", "rules", "resources", "file", "template", "template_row"})
_RULE_SKIP = frozenset({"id", "line", "synthetic"})
# Lists whose order means nothing: any approver of a stage may approve, and so on.
_SETS = frozenset(
    {"approvers", "escalate_to", "owners", "managers", "incompatible_with", "incompatible_groups"}
)
# Model names that differ from the rule-file keys reviewers read.
_KEYS = {"outcome": "decision", "maximum": "max", "minimum": "min"}
_RULE_ORDER = ("priority", "description", "when", "outcome", "reason", "approval", "lifetime")


@dataclass(frozen=True)
class FieldChange:
    """One field whose normalised value differs; None on a side where it is not set."""

    field: str
    before: Any
    after: Any

    def to_dict(self) -> dict:
        return {"field": self.field, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class RuleChange:
    id: str
    change: str  # added | removed | changed
    fields: tuple[FieldChange, ...]
    line: int = 0  # in the new file (the old one for a removed rule)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "change": self.change,
            "line": self.line,
            "fields": [f.to_dict() for f in self.fields],
        }


@dataclass(frozen=True)
class ResourceChange:
    change: str  # added | removed
    connector: str
    resource: str
    role: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PackageChange:
    id: str
    change: str  # added | removed | changed
    file: str  # in the new bundle (the old one for a removed package)
    fields: tuple[FieldChange, ...] = ()
    resources: tuple[ResourceChange, ...] = ()
    rules: tuple[RuleChange, ...] = ()
    template: str | None = None  # the template that made it, and from which row
    row: str | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "change": self.change,
            "file": self.file,
            "template": self.template,
            "row": self.row,
            "fields": [f.to_dict() for f in self.fields],
            "resources": [r.to_dict() for r in self.resources],
            "rules": [r.to_dict() for r in self.rules],
        }


@dataclass(frozen=True)
class BundleDiff:
    """What differs between an old and a new bundle; `old`/`new` label the sides."""

    old: str
    new: str
    packages: tuple[PackageChange, ...] = field(default=())

    @property
    def effective(self) -> bool:
        return bool(self.packages)

    def summary(self) -> dict[str, dict[str, int]]:
        counts = {kind: {"added": 0, "removed": 0, "changed": 0} for kind in ("packages", "rules")}
        counts["resources"] = {"added": 0, "removed": 0}
        fields_changed = 0
        for package in self.packages:
            counts["packages"][package.change] += 1
            if package.change == "changed":
                fields_changed += len(package.fields)
            for rule in package.rules:
                counts["rules"][rule.change] += 1
            for resource in package.resources:
                counts["resources"][resource.change] += 1
        packages = counts.pop("packages")
        return {"packages": packages, "fields": {"changed": fields_changed}, **counts}

    def to_dict(self) -> dict:
        return {
            "old": self.old,
            "new": self.new,
            "effective": self.effective,
            "summary": self.summary(),
            "packages": [p.to_dict() for p in self.packages],
        }


def diff_bundles(
    old: Bundle, new: Bundle, *, old_label: str = "", new_label: str = ""
) -> BundleDiff:
    """Compare two bundles package by package, rule by rule, field by field."""
    changes = []
    for package_id in sorted(set(old.packages) | set(new.packages)):
        before, after = old.packages.get(package_id), new.packages.get(package_id)
        if before is None:
            changes.append(_whole(after, "added"))
        elif after is None:
            changes.append(_whole(before, "removed"))
        else:
            change = _package_change(before, after)
            if change is not None:
                changes.append(change)
    return BundleDiff(
        old=old_label or old.version.id, new=new_label or new.version.id, packages=tuple(changes)
    )


def _whole(package: AccessPackage, change: str) -> PackageChange:
    """An added or removed package, with every field, resource and rule it has."""
    values = package_values(package)
    added = change == "added"
    rules = tuple(
        RuleChange(r.id, change, _changes(None, r) if added else _changes(r, None), r.line)
        for r in _written(package)
    )
    return PackageChange(
        package.id,
        change,
        package.file,
        fields=_field_changes({}, values) if added else _field_changes(values, {}),
        resources=tuple(_resource(change, r) for r in sorted(set(package.resources), key=_rkey)),
        rules=rules,
        **_origin(package),
    )


def _origin(package: AccessPackage) -> dict[str, str | None]:
    return {"template": package.template, "row": package.template_row}


def _package_change(old: AccessPackage, new: AccessPackage) -> PackageChange | None:
    fields_ = list(_field_changes(package_values(old), package_values(new)))
    order = _tie_order(old, new)
    if order is not None:
        fields_.append(FieldChange("ruleOrder", *order))
    resources = [
        _resource("removed", r) for r in sorted(set(old.resources) - set(new.resources), key=_rkey)
    ]
    resources += [
        _resource("added", r) for r in sorted(set(new.resources) - set(old.resources), key=_rkey)
    ]
    old_rules = {r.id: r for r in _written(old)}
    new_rules = {r.id: r for r in _written(new)}
    rules = []
    for rule in new_rules.values():
        before = old_rules.get(rule.id)
        if before is None:
            rules.append(RuleChange(rule.id, "added", _changes(None, rule), rule.line))
        else:
            changed = _changes(before, rule)
            if changed:
                rules.append(RuleChange(rule.id, "changed", changed, rule.line))
    for rule in old_rules.values():
        if rule.id not in new_rules:
            rules.append(RuleChange(rule.id, "removed", _changes(rule, None), rule.line))
    if not (fields_ or resources or rules):
        return None
    return PackageChange(
        new.id, "changed", new.file, tuple(fields_), tuple(resources), tuple(rules), **_origin(new)
    )


def _written(package: AccessPackage) -> list[Rule]:
    """The rules of the file; the deny rules made from incompatibilities show as that field."""
    return [rule for rule in package.rules if not rule.synthetic]


def _tie_order(old: AccessPackage, new: AccessPackage) -> tuple[list[str], list[str]] | None:
    """Rules kept on both sides whose file order decides between them (same kind of outcome,
    same priority) and was swapped: which rule decides when both match has changed."""

    def key(rule: Rule) -> tuple[bool, int]:
        return rule.outcome is Outcome.DENY, rule.priority

    before = {r.id: (i, key(r)) for i, r in enumerate(_written(old))}
    after = {r.id: (i, key(r)) for i, r in enumerate(_written(new))}
    common = [rid for rid in before if rid in after]
    swapped: set[str] = set()
    for i, a in enumerate(common):
        for b in common[i + 1 :]:
            same_tie = before[a][1] == before[b][1] and after[a][1] == after[b][1]
            if same_tie and (before[a][0] < before[b][0]) != (after[a][0] < after[b][0]):
                swapped |= {a, b}
    if not swapped:
        return None
    return (
        [rid for rid in sorted(before, key=lambda r: before[r][0]) if rid in swapped],
        [rid for rid in sorted(after, key=lambda r: after[r][0]) if rid in swapped],
    )


def _resource(change: str, resource: Resource) -> ResourceChange:
    return ResourceChange(change, resource.connector, resource.resource, resource.role)


def _rkey(resource: Resource) -> tuple[str, str, str]:
    return resource.connector, resource.resource, resource.role


def _changes(old: Rule | None, new: Rule | None) -> tuple[FieldChange, ...]:
    before = rule_values(old) if old is not None else {}
    after = rule_values(new) if new is not None else {}
    return _field_changes(before, after)


def _field_changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    names = list(dict.fromkeys([*after, *before]))
    return tuple(
        FieldChange(name, before.get(name), after.get(name))
        for name in names
        if before.get(name) != after.get(name)
    )


def package_values(package: AccessPackage) -> dict[str, Any]:
    """The package's own fields (not its rules or resources), normalised, by rule-file key."""
    return _values(package, _PACKAGE_SKIP, ())


def rule_values(rule: Rule) -> dict[str, Any]:
    """A rule's fields, normalised, by rule-file key, in the order a rule file reads."""
    return _values(rule, _RULE_SKIP, _RULE_ORDER)


def _values(obj: Any, skip: frozenset[str], order: tuple[str, ...]) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(obj) if f.name not in skip]
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    out = {}
    for name in names:
        value = normalise(getattr(obj, name), set_like=name in _SETS)
        if value is not None and value != []:  # an empty list is the same as none
            out[_key(name)] = value
    return out


def _key(name: str) -> str:
    if name in _KEYS:
        return _KEYS[name]
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def normalise(value: Any, *, set_like: bool = False) -> Any:
    """A plain, JSON-able value that is equal exactly when the meaning is equal: durations in
    ISO-8601, conditions in one canonical form, order-free lists sorted, defaults left out."""
    if isinstance(value, Enum):  # before str: the model's enums are StrEnums
        return value.value
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return int(value) if float(value).is_integer() else value
    if isinstance(value, timedelta | isodate.Duration):
        return isodate.duration_isoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Window):
        return {"cron": value.cron, "timezone": value.timezone}
    if isinstance(value, Cmp | All | AnyOf | Not):
        return condition(value)
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.default is not dataclasses.MISSING and item == f.default:
                continue
            normal = normalise(item, set_like=f.name in _SETS)
            if normal is not None and normal != []:
                out[_key(f.name)] = normal
        return out
    if isinstance(value, tuple | list | frozenset | set):
        items = [normalise(item) for item in value]
        return sorted({_canon(i): i for i in items}.values(), key=_canon) if set_like else items
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in value.items()}
    return str(value)


def condition(tree: Condition) -> Any:
    """A `when:` tree in canonical form; None for "always"."""
    tree = _flatten(tree)
    if isinstance(tree, All) and not tree.items:
        return None
    return _render(tree)


def _flatten(tree: Condition) -> Condition:
    """Nested all-in-all and any-in-any merged, duplicates dropped, one item unwrapped."""
    if isinstance(tree, Not):
        inner = _flatten(tree.item)
        return inner.item if isinstance(inner, Not) else Not(inner)
    if isinstance(tree, All | AnyOf):
        kind = type(tree)
        items: list[Condition] = []
        for item in (_flatten(i) for i in tree.items):
            for part in item.items if isinstance(item, kind) else (item,):
                if part not in items:
                    items.append(part)
        if len(items) == 1:
            return items[0]
        return kind(tuple(items))
    return tree


def _render(tree: Condition) -> Any:
    if isinstance(tree, Cmp):
        value = tree.value
        if isinstance(value, tuple):
            value = sorted(set(value))
        elif isinstance(value, Window):
            value = normalise(value)
        elif tree.field == "request.duration" and not isinstance(value, bool):
            value = isodate.duration_isoformat(timedelta(seconds=value))
        else:
            value = normalise(value)
        return {tree.field: {tree.op: value}}
    if isinstance(tree, Not):
        return {"not": _render(tree.item)}
    key = "all" if isinstance(tree, All) else "any"
    return {key: sorted((_render(item) for item in tree.items), key=_canon)}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
