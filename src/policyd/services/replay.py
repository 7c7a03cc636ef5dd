"""Replay: decide stored decision inputs again under a candidate version, writing nothing.

The decision log keeps each decision's input as evaluated (subject, request, `now`), so a
candidate bundle can be asked the same questions at the same moments. Rows are read in id
order (ids are time-ordered) in batches by keyset, so memory stays flat however many there
are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal_column, or_, select
from sqlalchemy.orm import Session

from policyd.domain import RequestOptions
from policyd.rules import (
    Bundle,
    InvalidInputError,
    Policy,
    ProblemsError,
    UnknownPackageError,
    load_texts,
)
from policyd.rules.auto_assign import AUTO_RULE
from policyd.services.decisions import subject_from_view
from policyd.services.errors import InvalidError
from policyd.services.versions import VersionService
from policyd.store.models import DecisionRecord

BATCH = 2000
NO_PACKAGE = "no such package"  # the candidate does not define the package any more
UNREADABLE = "unreadable input"  # a stored input the candidate cannot take (kept, counted)


@dataclass(frozen=True)
class Change:
    """A past decision the candidate would decide differently."""

    decision_id: str
    at: datetime
    package: str
    subject_id: str
    version: str
    before: tuple[str, str | None]  # outcome, deciding rule
    after: tuple[str, str | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "at": self.at.isoformat(),
            "package": self.package,
            "subject_id": self.subject_id,
            "version": self.version,
            "before": {"decision": self.before[0], "rule": self.before[1]},
            "after": {"decision": self.after[0], "rule": self.after[1]},
        }


@dataclass
class ReplayReport:
    """What a replay found: how many decisions it examined and the changed ones counted per
    package and transition."""

    candidate: str
    examined: int = 0
    changed: int = 0
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def count(self, change: Change) -> None:
        self.changed += 1
        self.transitions[(change.package, change.before[0], change.after[0])] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "examined": self.examined,
            "changed": self.changed,
            "counts": [
                {"package": package, "from": before, "to": after, "decisions": n}
                for (package, before, after), n in sorted(self.transitions.items())
            ],
        }


class ReplayService:
    """Replays the decision log of `session`'s database (read only)."""

    def __init__(self, session: Session):
        self.session = session

    def candidate(
        self, *, version: str | None = None, files: Mapping[str, str] | None = None
    ) -> Bundle:
        """The rules to try: a published version (active or not) or rule-file texts.

        Raises:
            NotFoundError: no such version.
            InvalidError: the files do not load, with every file:line problem.
        """
        if (version is None) == (files is None):
            raise InvalidError("give a published version or the files to try", field="version")
        if version is not None:
            files = VersionService(self.session).get(version).files
        try:
            return load_texts(dict(files or {}))
        except ProblemsError as err:
            raise InvalidError(
                f"the candidate has {len(err.problems)} error(s)",
                field="files",
                errors=[str(problem) for problem in err.problems],
            ) from None

    def run(
        self,
        candidate: Bundle,
        *,
        since: datetime | None = None,
        package: str | None = None,
        limit: int = 100,
        max_examined: int | None = None,
    ) -> tuple[ReplayReport, list[Change]]:
        """Replay under `candidate`: the report and the first `limit` changes.

        Raises:
            InvalidError: more than `max_examined` decisions match (narrow the window).
        """
        if max_examined is not None:
            total = self.count(since=since, package=package, at_most=max_examined + 1)
            if total > max_examined:
                raise InvalidError(
                    f"more than {max_examined:,} decisions match; replay at most that here (give "
                    "`since` or `package`, or run `policyd replay`)",
                    field="since",
                )
        report = ReplayReport(candidate=candidate.version.id)
        listed: list[Change] = []
        policy = Policy(candidate)
        try:
            for change in self.replay(policy, report, since=since, package=package):
                if len(listed) < limit:
                    listed.append(change)
        finally:
            policy.close()
        return report, listed

    def count(
        self,
        *,
        since: datetime | None = None,
        package: str | None = None,
        at_most: int | None = None,
    ) -> int:
        """How many stored decisions a replay with these filters would examine; with
        `at_most`, counting stops there (a log of millions is not read to say "too many")."""
        matches = _filtered(select(literal_column("1")).select_from(DecisionRecord), since, package)
        if at_most is not None:
            matches = matches.limit(at_most)
        return self.session.scalar(select(func.count()).select_from(matches.subquery())) or 0

    def replay(
        self,
        candidate: Policy,
        report: ReplayReport,
        *,
        since: datetime | None = None,
        package: str | None = None,
        progress: Callable[[int], None] | None = None,
        batch: int = BATCH,
    ) -> Iterator[Change]:
        """Each stored decision that `candidate` decides differently, in id order (time order
        to the millisecond); `report` counts as it goes, `progress` is told how many rows each
        batch held."""
        last: str | None = None
        columns = (
            DecisionRecord.at,
            DecisionRecord.id,
            DecisionRecord.package,
            DecisionRecord.subject_id,
            DecisionRecord.version,
            DecisionRecord.outcome,
            DecisionRecord.rule,
            DecisionRecord.input,
        )
        while True:
            query = _filtered(select(*columns), since, package)
            if last is not None:
                query = query.where(DecisionRecord.id > last)
            rows = self.session.execute(query.order_by(DecisionRecord.id).limit(batch)).all()
            if not rows:
                return
            for row in rows:
                report.examined += 1
                after = _decide(candidate, row.package, row.input)
                before = (row.outcome, row.rule)
                if after != before:
                    change = Change(
                        row.id, row.at, row.package, row.subject_id, row.version, before, after
                    )
                    report.count(change)
                    yield change
            last = rows[-1].id
            self.session.expunge_all()
            if progress is not None:
                progress(len(rows))


def _filtered(query, since: datetime | None, package: str | None):
    # Auto-assignments are logged as the system's decisions on the autoAssign rule, which
    # no package's rules make: not decisions a candidate could decide again.
    query = query.where(or_(DecisionRecord.rule.is_(None), DecisionRecord.rule != AUTO_RULE))
    if since is not None:
        query = query.where(DecisionRecord.at >= since)
    if package is not None:
        query = query.where(DecisionRecord.package == package)
    return query


def _decide(candidate: Policy, package: str, stored: dict[str, Any]) -> tuple[str, str | None]:
    try:
        subject = subject_from_view(stored["subject"])
        request = RequestOptions(**(stored.get("request") or {}))
        now = datetime.fromisoformat(stored["now"])
    except (KeyError, TypeError, ValueError):
        return UNREADABLE, None
    try:
        decision = candidate.decide(package, subject, request, now=now)
    except UnknownPackageError:
        return NO_PACKAGE, None
    except InvalidInputError:
        return UNREADABLE, None
    return decision.outcome.value, decision.rule
