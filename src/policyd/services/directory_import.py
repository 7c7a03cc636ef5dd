"""Parse, check and apply directory import files (JSON and CSV); all-or-nothing."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate
from sqlalchemy.orm import Session

from policyd.rules import (
    ProblemsError,
)
from policyd.rules.inputs import Id, UserFieldsSchema
from policyd.rules.source import Document, Problem, flatten_messages, format_path, parse_document
from policyd.services.actor import Actor
from policyd.services.directory import (
    ACTIVE_USER,
    DISABLED,
    USER_FIELDS,
    DirectoryService,
    user_defaults,
    user_view,
)
from policyd.services.errors import NotFoundError
from policyd.services.leavers import LeaverService
from policyd.store.models import ConnectedOrganization, Group


def _identifier() -> fields.String:
    return fields.String(required=True, validate=validate.Length(min=1, max=200))


class ImportUserSchema(UserFieldsSchema):
    """A user as `PUT /v1/users/<id>` takes it, plus its id; a field left out is cleared
    (an import replaces the whole record)."""

    id = Id(required=True)
    # false: the user left (HR's leaver feed); their access ends as when they are deleted
    account_enabled = fields.Boolean(load_default=True)

    @post_load
    def whole_record(self, data: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {**user_defaults(), **data}


class ImportGroupSchema(Schema):
    class Meta:
        unknown = RAISE

    id = _identifier()
    # no default: a group given without display_name keeps the name it has
    display_name = fields.String(allow_none=True, validate=validate.Length(max=200))
    members = fields.List(_identifier(), load_default=list)


class ImportOrganizationSchema(Schema):
    """A connected organisation as `PUT /v1/organizations/<id>` takes it, plus its id."""

    class Meta:
        unknown = RAISE

    id = _identifier()
    display_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    domains = fields.List(fields.String(), load_default=list)
    internal_sponsors = fields.List(fields.String(), load_default=list)
    external_sponsors = fields.List(fields.String(), load_default=list)
    state = fields.String(
        load_default="configured", validate=validate.OneOf(["configured", "proposed"])
    )


class DirectoryFileSchema(Schema):
    class Meta:
        unknown = RAISE

    users = fields.List(fields.Raw(), load_default=list)
    groups = fields.List(fields.Raw(), load_default=list)
    organizations = fields.List(fields.Raw(), load_default=list)


Locate = Callable[[tuple[str | int, ...], str], Problem]
"""Builds a Problem at a key path inside one entry of the file."""


@dataclass
class Entry:
    data: dict[str, Any]
    problem: Locate


@dataclass
class DirectoryImport:
    """What a directory file holds, validated entry by entry."""

    users: list[Entry] = field(default_factory=list)
    groups: list[Entry] = field(default_factory=list)
    organizations: list[Entry] = field(default_factory=list)
    # (kind, id, where) of every entry with an id, also of those that failed validation
    ids: list[tuple[str, str, Locate]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


CSV_COLUMNS = (*(f for f in USER_FIELDS if f != "attributes"), "id", "groups", "account_enabled")


def parse_json_directory(text: str, file: str) -> DirectoryImport:
    """Validate a JSON directory file; the result lists every problem with its line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return DirectoryImport(problems=[Problem(file, err.lineno, f"invalid JSON: {err.msg}")])
    document = _json_document(text, file, data)
    result = DirectoryImport()
    try:
        top = DirectoryFileSchema().load(data)
    except ValidationError as err:
        result.problems = [document.problem(p, m) for p, m in flatten_messages(err.messages)]
        return result
    for key in ("users", "groups", "organizations"):
        schema = {
            "users": ImportUserSchema,
            "groups": ImportGroupSchema,
            "organizations": ImportOrganizationSchema,
        }[key]()
        for index, raw in enumerate(top[key]):
            locate = partial(_json_problem, document, (key, index))
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                result.ids.append((key, raw["id"], locate))
            try:
                getattr(result, key).append(Entry(schema.load(raw), locate))
            except ValidationError as err:
                result.problems += [locate(p, m) for p, m in flatten_messages(err.messages)]
    return result


def _json_document(text: str, file: str, data: Any) -> Document:
    """The key lines of a JSON text, read as YAML (a superset of JSON once tabs are spaces).

    Valid JSON has tabs only between tokens, so replacing them keeps values and lines.
    """
    try:
        document = parse_document(text.replace("\t", " "), file)
    except ProblemsError as err:
        duplicates = [p for p in err.problems if p.message == "duplicate key"]
        if duplicates:  # json.loads would silently keep the last one
            raise ProblemsError(duplicates) from None
        document = Document(file=file, text=text, data=data)  # no lines: errors say line 1
    document.data = data
    return document


def _json_problem(document: Document, base: tuple, path: tuple, message: str) -> Problem:
    return document.problem((*base, *path), message)


def parse_csv_directory(text: str, file: str) -> DirectoryImport:
    """Validate a CSV directory file (one user per row); problems carry the row's line."""
    result = DirectoryImport()
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        result.problems.append(Problem(file, 1, "empty file: expected a header row"))
        return result
    except csv.Error as err:
        result.problems.append(Problem(file, reader.line_num, f"invalid CSV: {err}"))
        return result
    for index, name in enumerate(header):
        if not name:
            result.problems.append(Problem(file, 1, f"column {index + 1} has no name"))
        elif name in header[:index]:
            result.problems.append(Problem(file, 1, "duplicate column", name))
    if "id" not in header:
        result.problems.append(Problem(file, 1, "missing column", "id"))
    if result.problems:
        return result
    groups: dict[str, Entry] = {}
    start = reader.line_num + 1
    try:
        for row in reader:
            line, start = start, reader.line_num + 1
            if any(cell.strip() for cell in row):
                _csv_row(result, groups, header, row, partial(_csv_problem, file, line))
    except csv.Error as err:
        result.problems.append(Problem(file, reader.line_num, f"invalid CSV: {err}"))
    result.groups = list(groups.values())
    return result


def _csv_row(
    result: DirectoryImport, groups: dict[str, Entry], header: list[str], row: list[str], locate
) -> None:
    if len(row) != len(header):
        result.problems.append(locate((), f"{len(row)} cells, but the header has {len(header)}"))
        return
    raw: dict[str, Any] = {"attributes": {}}
    group_ids: list[str] = []
    for name, cell in zip(header, row, strict=True):
        value = cell.strip()
        if name == "groups":
            group_ids = list(dict.fromkeys(g.strip() for g in value.split(";") if g.strip()))
        elif name in CSV_COLUMNS:
            if value:
                raw[name] = value
        elif value:
            raw["attributes"][name] = value
    if "id" in raw:
        result.ids.append(("users", raw["id"], locate))
    try:
        user = ImportUserSchema().load(raw)
    except ValidationError as err:
        result.problems += [locate(p, m) for p, m in flatten_messages(err.messages)]
        return
    result.users.append(Entry(user, locate))
    for group_id in group_ids:
        if len(group_id) > 200:
            result.problems.append(locate(("groups",), f"group id {group_id[:20]}... is too long"))
            continue
        entry = groups.setdefault(group_id, Entry({"id": group_id, "members": []}, locate))
        entry.data["members"].append(user["id"])


def _csv_problem(file: str, line: int, path: tuple, message: str) -> Problem:
    return Problem(file, line, message, format_path(path))


def check_directory(parsed: DirectoryImport, directory: DirectoryService) -> list[Problem]:
    """Problems across entries: repeated ids, members who are in neither file nor directory."""
    problems: list[Problem] = []
    first: dict[tuple[str, str], int] = {}
    for kind, key, locate in parsed.ids:
        if (kind, key) in first:
            message = f"duplicate {kind[:-1]} id {key!r} (first on line {first[kind, key]})"
            problems.append(locate(("id",), message))
        else:
            first[kind, key] = locate(("id",), "").line
    known = {key for kind, key, _ in parsed.ids if kind == "users"}
    for entry in parsed.groups:
        for index, member in enumerate(entry.data["members"]):
            if member in known:
                continue
            try:
                directory.get_user(member)
            except NotFoundError:
                message = f"no user {member!r} in this file or in the directory"
                problems.append(entry.problem(("members", index), message))
            else:
                known.add(member)
    return problems


def apply_directory(
    parsed: DirectoryImport, session: Session, actor: Actor, *, now: datetime
) -> dict[str, Counter]:
    """Create or update every entry (the caller commits); unchanged ones are not rewritten.

    Returns:
        Per kind (organizations, users, groups, memberships), how many were created, updated
        (memberships: added) or unchanged.
    """
    directory = DirectoryService(session)
    leavers = LeaverService(session)
    counts = {kind: Counter() for kind in ("organizations", "users", "groups", "memberships")}
    org_fields = ("display_name", "domains", "internal_sponsors", "external_sponsors", "state")
    for entry in parsed.organizations:
        data = entry.data
        org = session.get(ConnectedOrganization, data["id"])
        wanted = {**data, "domains": [d.lower() for d in data["domains"]]}
        if org is not None and all(getattr(org, f) == wanted[f] for f in org_fields):
            counts["organizations"]["unchanged"] += 1
            continue
        directory.put_organization(actor, data["id"], data, now=now)
        counts["organizations"]["updated" if org is not None else "created"] += 1
    for entry in parsed.users:
        data = {name: entry.data[name] for name in USER_FIELDS}
        try:
            before = user_view(directory.get_user(entry.data["id"]))
        except NotFoundError:
            before = None
        if before is None or any(before[name] != data[name] for name in USER_FIELDS):
            directory.put_user(actor, entry.data["id"], data, now=now)
            counts["users"]["updated" if before is not None else "created"] += 1
        else:
            counts["users"]["unchanged"] += 1
        user = directory.get_user(entry.data["id"])
        if not entry.data["account_enabled"] and user.state == ACTIVE_USER:
            leavers.leave(actor, user, DISABLED, now=now)
            counts["users"]["disabled"] += 1
        elif entry.data["account_enabled"] and user.state == DISABLED:
            directory.enable_user(actor, user, now=now)
            counts["users"]["enabled"] += 1
    for entry in parsed.groups:
        data = entry.data
        group = session.get(Group, data["id"])
        if group is None:
            directory.put_group(actor, data["id"], data.get("display_name"), now=now)
            counts["groups"]["created"] += 1
        elif "display_name" in data and data["display_name"] != group.display_name:
            directory.put_group(actor, data["id"], data["display_name"], now=now)
            counts["groups"]["updated"] += 1
        else:
            counts["groups"]["unchanged"] += 1
    session.flush()
    for entry in parsed.groups:
        for member in dict.fromkeys(entry.data["members"]):
            added = directory.add_member(actor, entry.data["id"], member, now=now)
            counts["memberships"]["added" if added else "unchanged"] += 1
    return counts


def import_directory(
    parsed: DirectoryImport, session: Session, actor: Actor, *, now: datetime
) -> dict[str, Counter]:
    """Check the whole import, then apply it in one transaction and commit.

    Returns:
        What apply_directory counted.

    Raises:
        ProblemsError: the file's own problems and those check_directory finds; nothing
            is written.
    """
    problems = parsed.problems + check_directory(parsed, DirectoryService(session))
    if problems:
        raise ProblemsError(problems)
    counts = apply_directory(parsed, session, actor, now=now)
    session.commit()
    return counts
