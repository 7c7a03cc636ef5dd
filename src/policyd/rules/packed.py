"""The packed form of a validated bundle: plain JSON per package, decoded only when asked for."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import isodate

from policyd.domain import Outcome
from policyd.rules.condition import All, AnyOf, Cmp, Condition, Not
from policyd.rules.model import (
    AccessPackage,
    ApprovalPolicy,
    AutoAssignPolicy,
    Bundle,
    Catalog,
    LifetimePolicy,
    NoResponse,
    Question,
    QuestionType,
    Recommendation,
    ReminderPolicy,
    RequestedDuration,
    Resource,
    ReviewPolicy,
    Rule,
    StagePolicy,
    Verdict,
    Version,
)
from policyd.rules.timing import Window, parse_duration

# Bump when the encoding, or what a valid bundle is, changes: a version packed in another format
# is loaded, and so validated again, from its files.
FORMAT = "policyd-packed/7"  # 2: packages carry their access reviews; 3: their questions;
# 4: catalogs and package managers; 5: their own reminders; 6: catalogs' reviews, rules' questions;
# 7: auto-assignment rules


class PackedFormatError(ValueError):
    """The text is not a packed bundle in this policyd's format."""


def pack_bundle(bundle: Bundle) -> str:
    """One header line, then one `id<TAB>json` line per package (rule files are data, so the
    form is data too: no code, no pickles). Each line decodes on its own."""
    version = bundle.version
    header = {
        "format": FORMAT,
        "content_hash": version.content_hash,
        "git_commit": version.git_commit,
        "git_dirty": version.git_dirty,
        # who administers which packages (catalogs and package managers)
        "delegation": {
            "catalogs": [_catalog(catalog) for catalog in bundle.catalogs.values()],
            "managed": {package_id: list(refs) for package_id, refs in bundle.managed.items()},
        },
        "reminders": {pid: _reminders(policy) for pid, policy in bundle.reminders.items()},
    }
    lines = [json.dumps(header, sort_keys=True)]
    for package_id, package in bundle.packages.items():
        lines.append(f"{package_id}\t{json.dumps(_package(package), separators=(',', ':'))}")
    return "\n".join(lines)


def unpack_bundle(text: str) -> Bundle:
    """A Bundle whose packages decode on first access (its `files` are not kept).

    Only `text` and each package's place in it are held, so the packed form costs its own size
    once; nothing is copied line by line.

    Raises:
        PackedFormatError: not this format; load the version from its files instead.
    """
    end = text.find("\n")
    end = len(text) if end < 0 else end
    try:
        header = json.loads(text[:end])
    except ValueError:
        raise PackedFormatError("no packed header") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise PackedFormatError(f"packed format {header!r} is not {FORMAT}")
    places: dict[str, tuple[int, int]] = {}
    find = text.find
    while end < len(text):
        start = end + 1
        tab = find("\t", start)
        end = find("\n", start)
        end = len(text) if end < 0 else end
        if not start < tab < end:
            raise PackedFormatError(f"packed line at character {start} has no package id")
        places[text[start:tab]] = (tab + 1, end)
    version = Version(header["content_hash"], header["git_commit"], header["git_dirty"])
    delegation = header.get("delegation", {})
    catalogs = {data["id"]: _uncatalog(data) for data in delegation.get("catalogs", [])}
    managed = {pid: tuple(refs) for pid, refs in delegation.get("managed", {}).items()}
    return Bundle(
        packages=PackedPackages(text, places),  # type: ignore[arg-type]
        version=version,
        catalogs=catalogs,
        managed=managed,
        reminders={pid: _unreminders(data) for pid, data in header["reminders"].items()},
    )


class PackedPackages(Mapping[str, AccessPackage]):
    """Package id -> AccessPackage, decoding each package's JSON once, when first read."""

    def __init__(self, text: str, places: dict[str, tuple[int, int]]):
        self._text = text
        self._places = places  # package id -> where its JSON is in `text`
        self._decoded: dict[str, AccessPackage] = {}
        self._lock = threading.Lock()

    def __getitem__(self, package_id: str) -> AccessPackage:
        package = self._decoded.get(package_id)
        if package is None:
            start, end = self._places[package_id]  # KeyError for an unknown package, as a dict
            package = _unpackage(json.loads(self._text[start:end]))
            with self._lock:
                package = self._decoded.setdefault(package_id, package)
        return package

    def __contains__(self, package_id: object) -> bool:
        return package_id in self._places

    def __iter__(self) -> Iterator[str]:
        return iter(self._places)

    def __len__(self) -> int:
        return len(self._places)

    @property
    def decoded(self) -> int:
        """How many packages have been decoded so far."""
        return len(self._decoded)


def _catalog(catalog: Catalog) -> dict[str, Any]:
    return {
        "id": catalog.id,
        "name": catalog.display_name,
        "owners": list(catalog.owners),
        "description": catalog.description,
        "packages": list(catalog.packages),
        "file": catalog.file,
        "line": catalog.line,
        "reviews": [_review(review) for review in catalog.reviews],
    }


def _uncatalog(data: dict[str, Any]) -> Catalog:
    return Catalog(
        id=data["id"],
        display_name=data["name"],
        owners=tuple(data["owners"]),
        description=data["description"],
        packages=tuple(data["packages"]),
        file=data["file"],
        line=data["line"],
        reviews=tuple(_unreview(review) for review in data["reviews"]),
    )


def _package(package: AccessPackage) -> dict[str, Any]:
    return {
        "id": package.id,
        "name": package.display_name,
        "rules": [_rule(rule) for rule in package.rules],
        "resources": [[r.connector, r.resource, r.role, r.line] for r in package.resources],
        "description": package.description,
        "catalog": package.catalog,
        "owners": list(package.owners),
        "managers": list(package.managers),
        "incompatible": list(package.incompatible_with),
        "groups": list(package.incompatible_groups),
        "lifetime": _lifetime(package.lifetime),
        "questions": [_question(q) for q in package.questions],
        "file": package.file,
        "template": package.template,
        "row": package.template_row,
        "reviews": [_review(review) for review in package.reviews],
        "reminders": _reminders(package.reminders),
        "auto": _auto(package.auto_assign),
    }


def _unpackage(data: dict[str, Any]) -> AccessPackage:
    return AccessPackage(
        id=data["id"],
        display_name=data["name"],
        rules=tuple(_unrule(rule) for rule in data["rules"]),
        resources=tuple(Resource(c, r, role, line) for c, r, role, line in data["resources"]),
        description=data["description"],
        catalog=data["catalog"],
        owners=tuple(data["owners"]),
        managers=tuple(data["managers"]),
        incompatible_with=tuple(data["incompatible"]),
        incompatible_groups=tuple(data["groups"]),
        lifetime=_unlifetime(data["lifetime"]),
        questions=tuple(_unquestion(q) for q in data["questions"]),
        file=data["file"],
        template=data["template"],
        template_row=data["row"],
        reviews=tuple(_unreview(review) for review in data["reviews"]),
        reminders=_unreminders(data["reminders"]),
        auto_assign=_unauto(data["auto"]),
    )


def _reminders(policy: ReminderPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    expiry = policy.expiry
    return {
        "expiry": None if expiry is None else [_span(offset) for offset in expiry],
        "approval": _span(policy.approval),
    }


def _unreminders(data: dict[str, Any] | None) -> ReminderPolicy | None:
    if data is None:
        return None
    expiry = data["expiry"]
    return ReminderPolicy(
        expiry=None if expiry is None else tuple(timedelta(*offset) for offset in expiry),
        approval=_unspan(data["approval"]),
    )


def _question(question: Question) -> list[Any]:
    q = question
    return [
        q.id,
        q.type.value,
        [list(t) for t in q.text],
        q.required,
        list(q.options),
        q.minimum,
        q.maximum,
    ]


def _unquestion(data: list[Any]) -> Question:
    question_id, kind, text, required, options, minimum, maximum = data
    return Question(
        id=question_id,
        type=QuestionType(kind),
        text=tuple((tag, words) for tag, words in text),
        required=required,
        options=tuple(options),
        minimum=minimum,
        maximum=maximum,
    )


def _rule(rule: Rule) -> dict[str, Any]:
    approval = rule.approval
    return {
        "id": rule.id,
        "outcome": rule.outcome.value,
        "when": _condition(rule.when),
        "priority": rule.priority,
        "reason": rule.reason,
        "description": rule.description,
        "approval": None
        if approval is None
        else {
            "stages": [
                [list(s.approvers), _span(s.timeout), list(s.escalate_to)] for s in approval.stages
            ],
            "justification": approval.require_justification,
        },
        "lifetime": _lifetime(rule.lifetime),
        "line": rule.line,
        "synthetic": rule.synthetic,
        "questions": [_question(q) for q in rule.questions],
    }


def _unrule(data: dict[str, Any]) -> Rule:
    approval = data["approval"]
    return Rule(
        id=data["id"],
        outcome=Outcome(data["outcome"]),
        when=_uncondition(data["when"]),
        priority=data["priority"],
        reason=data["reason"],
        description=data["description"],
        approval=None
        if approval is None
        else ApprovalPolicy(
            stages=tuple(
                StagePolicy(tuple(approvers), _unspan(timeout), tuple(escalate))
                for approvers, timeout, escalate in approval["stages"]
            ),
            require_justification=approval["justification"],
        ),
        lifetime=_unlifetime(data["lifetime"]),
        line=data["line"],
        synthetic=data["synthetic"],
        questions=tuple(_unquestion(q) for q in data["questions"]),
    )


def _condition(node: Condition) -> list[Any]:
    if isinstance(node, All):
        return ["all", [_condition(item) for item in node.items]]
    if isinstance(node, AnyOf):
        return ["any", [_condition(item) for item in node.items]]
    if isinstance(node, Not):
        return ["not", _condition(node.item)]
    value = node.value
    if isinstance(value, Window):
        value = {"cron": value.cron, "timezone": value.timezone}
    elif isinstance(value, tuple):
        value = list(value)
    return ["cmp", node.field, node.op, value]


def _uncondition(data: list[Any]) -> Condition:
    kind = data[0]
    if kind == "all":
        return All(tuple(_uncondition(item) for item in data[1]))
    if kind == "any":
        return AnyOf(tuple(_uncondition(item) for item in data[1]))
    if kind == "not":
        return Not(_uncondition(data[1]))
    _, field, op, value = data
    if isinstance(value, dict):
        value = Window(value["cron"], value["timezone"])
    elif isinstance(value, list):
        value = tuple(value)
    return Cmp(field, op, value)


def _lifetime(policy: LifetimePolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    until = policy.until
    return {
        "duration": _span(policy.duration),
        "end": policy.end_date.isoformat() if policy.end_date else None,
        "until": None if until is None else {"cron": until.cron, "timezone": until.timezone},
        "max": _span(policy.maximum),
        "requested": policy.requested.value,
        "extendable": policy.extendable,
        "permanent": policy.permanent,
    }


def _unlifetime(data: dict[str, Any] | None) -> LifetimePolicy | None:
    if data is None:
        return None
    until = data["until"]
    return LifetimePolicy(
        duration=_unspan(data["duration"]),
        end_date=datetime.fromisoformat(data["end"]) if data["end"] else None,
        until=None if until is None else Window(until["cron"], until["timezone"]),
        maximum=_unspan(data["max"]),
        requested=RequestedDuration(data["requested"]),
        extendable=data["extendable"],
        permanent=data["permanent"],
    )


def _span(span: timedelta | None) -> list[int] | None:
    """A timedelta exactly, as [days, seconds, microseconds]."""
    return None if span is None else [span.days, span.seconds, span.microseconds]


def _unspan(data: list[int] | None) -> timedelta | None:
    if data is None:
        return None
    days, seconds, microseconds = data
    return timedelta(days=days, seconds=seconds, microseconds=microseconds)


def _review(review: ReviewPolicy) -> dict[str, Any]:
    return {
        "id": review.id,
        "cron": review.schedule.cron,
        "timezone": review.schedule.timezone,
        "duration": isodate.duration_isoformat(review.duration),  # months stay months
        "reviewers": list(review.reviewers),
        "fallback": list(review.fallback),
        "reminders": [isodate.duration_isoformat(r) for r in review.reminders],
        "default": review.on_no_response.value,
        "recommendations": [
            [r.id, r.verdict.value, _condition(r.when), r.reason] for r in review.recommendations
        ],
        "description": review.description,
    }


def _unreview(data: dict[str, Any]) -> ReviewPolicy:
    return ReviewPolicy(
        id=data["id"],
        schedule=Window(data["cron"], data["timezone"]),
        duration=parse_duration(data["duration"]),
        reviewers=tuple(data["reviewers"]),
        fallback=tuple(data["fallback"]),
        reminders=tuple(parse_duration(r) for r in data["reminders"]),
        on_no_response=NoResponse(data["default"]),
        recommendations=tuple(
            Recommendation(rid, Verdict(verdict), _uncondition(when), reason)
            for rid, verdict, when, reason in data["recommendations"]
        ),
        description=data["description"],
    )


def _auto(policy: AutoAssignPolicy | None) -> list[Any] | None:
    if policy is None:
        return None
    grace = None if policy.grace is None else isodate.duration_isoformat(policy.grace)
    return [_condition(policy.when), grace, policy.description]


def _unauto(data: list[Any] | None) -> AutoAssignPolicy | None:
    if data is None:
        return None
    when, grace, description = data
    return AutoAssignPolicy(
        _uncondition(when), None if grace is None else parse_duration(grace), description
    )
