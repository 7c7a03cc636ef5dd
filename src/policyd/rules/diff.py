"""Semantic diff of two bundles: packages, rules and resources compared field by field on the
loaded model, so reformatting, key order, comments and file layout never count."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from policyd.domain import Outcome
from policyd.rules.diff_values import FieldChange, condition, field_changes, normalise, values_of
from policyd.rules.model import AccessPackage, Bundle, Catalog, Resource, Rule

__all__ = ["BundleDiff", "CatalogChange", "FieldChange", "condition", "diff_bundles", "normalise"]

# Model fields that locate or identify a thing rather than say what it does: a package moved
# to another file, into a template or to another row of its template decides the same.
_PACKAGE_SKIP = frozenset({"id", "rules", "resources", "file", "template", "template_row"})
_RULE_SKIP = frozenset({"id", "line", "synthetic"})
# A catalog's packages show as the packages that joined or left it.
_CATALOG_SKIP = frozenset({"id", "packages", "file", "line"})
_RULE_ORDER = ("priority", "description", "when", "outcome", "reason", "approval", "lifetime")


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
class CatalogChange:
    """A catalog added, removed or changed: its fields (owners, reviews...) and the packages
    that joined or left it (a package moved between catalogs leaves one and joins the other)."""

    id: str
    change: str  # added | removed | changed
    file: str  # in the new bundle (the old one for a removed catalog)
    fields: tuple[FieldChange, ...] = ()
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "change": self.change,
            "file": self.file,
            "fields": [f.to_dict() for f in self.fields],
            "joined": list(self.joined),
            "left": list(self.left),
        }


@dataclass(frozen=True)
class BundleDiff:
    """What differs between an old and a new bundle; `old`/`new` label the sides."""

    old: str
    new: str
    packages: tuple[PackageChange, ...] = field(default=())
    catalogs: tuple[CatalogChange, ...] = field(default=())

    @property
    def effective(self) -> bool:
        return bool(self.packages or self.catalogs)

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
        catalogs = {"added": 0, "removed": 0, "changed": 0}
        for catalog in self.catalogs:
            catalogs[catalog.change] += 1
        return {
            "packages": packages,
            "fields": {"changed": fields_changed},
            **counts,
            "catalogs": catalogs,
        }

    def to_dict(self) -> dict:
        return {
            "old": self.old,
            "new": self.new,
            "effective": self.effective,
            "summary": self.summary(),
            "packages": [p.to_dict() for p in self.packages],
            "catalogs": [c.to_dict() for c in self.catalogs],
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
        old=old_label or old.version.id,
        new=new_label or new.version.id,
        packages=tuple(changes),
        catalogs=diff_catalogs(old, new),
    )


def diff_catalogs(old: Bundle, new: Bundle) -> tuple[CatalogChange, ...]:
    """Catalogs added, removed or changed: owners, reviews, names and membership."""
    changes = []
    for catalog_id in sorted(set(old.catalogs) | set(new.catalogs)):
        before, after = old.catalogs.get(catalog_id), new.catalogs.get(catalog_id)
        if before is None or after is None:
            whole = after or before
            kind = "added" if before is None else "removed"
            values = catalog_values(whole)
            fields_ = field_changes({}, values) if after else field_changes(values, {})
            members = tuple(whole.packages)
            joined, left = (members, ()) if after else ((), members)
            changes.append(CatalogChange(catalog_id, kind, whole.file, fields_, joined, left))
            continue
        fields_ = field_changes(catalog_values(before), catalog_values(after))
        joined = tuple(sorted(set(after.packages) - set(before.packages)))
        left = tuple(sorted(set(before.packages) - set(after.packages)))
        if fields_ or joined or left:
            changes.append(CatalogChange(catalog_id, "changed", after.file, fields_, joined, left))
    return tuple(changes)


def catalog_values(catalog: Catalog) -> dict[str, Any]:
    """A catalog's own fields (not its packages), normalised, by rule-file key."""
    return values_of(catalog, _CATALOG_SKIP, ())


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
        fields=field_changes({}, values) if added else field_changes(values, {}),
        resources=tuple(_resource(change, r) for r in sorted(set(package.resources), key=_rkey)),
        rules=rules,
        **_origin(package),
    )


def _origin(package: AccessPackage) -> dict[str, str | None]:
    return {"template": package.template, "row": package.template_row}


def _package_change(old: AccessPackage, new: AccessPackage) -> PackageChange | None:
    fields_ = list(field_changes(package_values(old), package_values(new)))
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
    return field_changes(before, after)


def package_values(package: AccessPackage) -> dict[str, Any]:
    """The package's own fields (not its rules or resources), normalised, by rule-file key."""
    return values_of(package, _PACKAGE_SKIP, ())


def rule_values(rule: Rule) -> dict[str, Any]:
    """A rule's fields, normalised, by rule-file key, in the order a rule file reads."""
    return values_of(rule, _RULE_SKIP, _RULE_ORDER)
