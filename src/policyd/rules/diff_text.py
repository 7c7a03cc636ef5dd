"""A BundleDiff as text for a terminal and as Markdown for a pull-request comment."""

from __future__ import annotations

from typing import Any

import yaml

from policyd.rules.diff import BundleDiff, CatalogChange, FieldChange, PackageChange

NO_CHANGE = "no effective change"
NONE = "(none)"
_SIGN = {"added": "+", "removed": "-", "changed": "~"}


def show(value: Any) -> str:
    """A normalised value on one line, as flow YAML (what a rule file would say)."""
    if isinstance(value, str) and "\n" not in value:
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def summary_line(diff: BundleDiff) -> str:
    """`1 package changed, 1 field changed, 1 rule added`, or `no effective change`."""
    if not diff.effective:
        return NO_CHANGE
    parts = []
    for kind, counts in diff.summary().items():
        noun = kind.removesuffix("s")
        for change, count in counts.items():
            if count:
                parts.append(f"{count} {noun}{'s' if count != 1 else ''} {change}")
    return ", ".join(parts)


def render_text(diff: BundleDiff) -> str:
    lines = [f"--- {diff.old}", f"+++ {diff.new}"]
    for package in diff.packages:
        lines.append(f"{_SIGN[package.change]} package {package.id} ({_where(package)})")
        whole = package.change != "changed"
        lines += [f"    {_field(change, whole)}" for change in package.fields]
        for resource in package.resources:
            lines.append(
                f"  {_SIGN[resource.change]} resource {resource.connector} "
                f"{resource.resource} (role {resource.role})"
            )
        for rule in package.rules:
            lines.append(f"  {_SIGN[rule.change]} rule {rule.id} (line {rule.line})")
            whole = rule.change != "changed"
            lines += [f"      {_field(change, whole)}" for change in rule.fields]
    for catalog in diff.catalogs:
        lines.append(f"{_SIGN[catalog.change]} catalog {catalog.id} ({catalog.file})")
        whole = catalog.change != "changed"
        lines += [f"    {_field(change, whole)}" for change in catalog.fields]
        lines += [f"  + package {package_id}" for package_id in catalog.joined]
        lines += [f"  - package {package_id}" for package_id in catalog.left]
    lines.append(summary_line(diff))
    return "\n".join(lines)


def _where(package: PackageChange) -> str:
    """The package's file, or its template and the row that made it."""
    if package.template:
        return f"template {package.template}, row {package.row}"
    return package.file


def _field(change: FieldChange, whole: bool) -> str:
    """`field: value` for a whole added or removed thing; `field: before -> after` for a
    change, with `(none)` for a side where the field is not set."""
    if whole:
        value = change.after if change.before is None else change.before
        return f"{change.field}: {show(value)}"
    return f"{change.field}: {_side(change.before)} -> {_side(change.after)}"


def _side(value: Any) -> str:
    return NONE if value is None else show(value)


def render_markdown(diff: BundleDiff) -> str:
    lines = [
        "### Policy diff",
        "",
        f"`{diff.old}` → `{diff.new}`: **{summary_line(diff)}**",
    ]
    for package in diff.packages:
        lines += ["", *_package_table(package)]
    for catalog in diff.catalogs:
        lines += ["", *_catalog_table(catalog)]
    return "\n".join(lines) + "\n"


def _catalog_table(catalog: CatalogChange) -> list[str]:
    lines = [
        f"#### {_SIGN[catalog.change]} catalog `{catalog.id}` ({catalog.file}): {catalog.change}",
        "",
        "| change | what | before | after |",
        "|---|---|---|---|",
    ]
    for change in catalog.fields:
        kind = catalog.change
        if kind == "changed" and (change.before is None or change.after is None):
            kind = "added" if change.before is None else "removed"
        lines.append(_row(kind, change.field, change.before, change.after))
    lines += [f"| joined | package `{_cell(p)}` | | |" for p in catalog.joined]
    lines += [f"| left | package `{_cell(p)}` | | |" for p in catalog.left]
    return lines


def _package_table(package: PackageChange) -> list[str]:
    lines = [
        f"#### {_SIGN[package.change]} package `{package.id}` ({_where(package)}): "
        f"{package.change}",
        "",
        "| change | what | before | after |",
        "|---|---|---|---|",
    ]
    for change in package.fields:
        kind = package.change
        if kind == "changed" and (change.before is None or change.after is None):
            kind = "added" if change.before is None else "removed"  # the field, not the package
        lines.append(_row(kind, change.field, change.before, change.after))
    for resource in package.resources:
        what = f"resource `{resource.connector}` `{resource.resource}` (role {resource.role})"
        lines.append(f"| {resource.change} | {_cell(what)} | | |")
    for rule in package.rules:
        before = "<br>".join(
            f"{c.field}: {_code(c.before)}" for c in rule.fields if c.before is not None
        )
        after = "<br>".join(
            f"{c.field}: {_code(c.after)}" for c in rule.fields if c.after is not None
        )
        if rule.change == "changed":
            before = "<br>".join(f"{c.field}: {_code(c.before) or NONE}" for c in rule.fields)
            after = "<br>".join(f"{c.field}: {_code(c.after) or NONE}" for c in rule.fields)
        what = f"rule `{rule.id}` (line {rule.line})"
        lines.append(f"| {rule.change} | {_cell(what)} | {before} | {after} |")
    return lines


def _row(change: str, what: str, before: Any, after: Any) -> str:
    return f"| {change} | {_cell(what)} | {_code(before)} | {_code(after)} |"


def _code(value: Any) -> str:
    if value is None:
        return ""
    text = show(value).replace("`", "'")
    return f"`{_cell(text)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
