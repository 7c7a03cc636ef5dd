"""Decisions over stored subjects, logged with their full input for later replay."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from policyd.domain import Decision, RequestOptions, Subject, UserType
from policyd.rules import InvalidInputError, PolicyRuntime, UnknownPackageError
from policyd.rules.question import check_answers
from policyd.rules.rule_question import every_question
from policyd.services.actor import Actor, Role
from policyd.services.approvers import with_resolved_approvers
from policyd.services.decision_log import DecisionLog, JsonText, compact_encoder
from policyd.services.directory import DirectoryService
from policyd.services.errors import ForbiddenError, InvalidError, NotFoundError
from policyd.services.listing import list_page
from policyd.services.subject_cache import SubjectCache
from policyd.store.models import DecisionRecord
from policyd.store.types import new_id


def subject_view(subject: Subject) -> dict[str, Any]:
    return {
        "id": subject.id,
        "email": subject.email,
        "type": str(subject.type),
        "groups": sorted(subject.groups),
        "manager": subject.manager,
        "organization": subject.organization,
        "packages": sorted(subject.packages),
        "department": subject.department,
        "jobTitle": subject.job_title,
        "employeeType": subject.employee_type,
        "attributes": subject.attributes,
    }


def subject_from_view(view: dict[str, Any]) -> Subject:
    """The Subject a decision-log input holds (the inverse of `subject_view`).

    Raises:
        KeyError, TypeError, ValueError: not a view `subject_view` wrote.
    """
    return Subject(
        id=view["id"],
        email=view.get("email"),
        type=UserType(view.get("type") or UserType.MEMBER),
        groups=frozenset(view.get("groups") or ()),
        manager=view.get("manager"),
        organization=view.get("organization"),
        packages=frozenset(view.get("packages") or ()),
        department=view.get("department"),
        job_title=view.get("jobTitle"),
        employee_type=view.get("employeeType"),
        attributes=dict(view.get("attributes") or {}),
    )


def _checked_answers(policy, version: str, package: str, request: RequestOptions):
    """The answers as the deciding version checked them (dates in ISO form)."""
    if not request.answers:
        return None
    if policy is None or policy.version != version:
        return dict(request.answers)  # swapped meanwhile: that version accepted them as given
    # The decision checked them against the questions asked of this subject; here they are
    # only normalised, against every question of the package and its rules.
    rules = policy.bundle.package(package)
    return check_answers(rules, request.answers, every_question(rules).values(), require=False)


# Who may ask for a decision (the API's guard admits the same roles; auditors only read).
DECIDERS = (Role.USER, Role.APP, Role.ADMIN)
_INSERT_LOG = DecisionRecord.__table__.insert()
# Compact and ASCII, as the decision log encodes its JSON columns (a result holds no floats).
_encode = compact_encoder()
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedDecision:
    """A decision and the id of its decision-log entry."""

    id: str
    decision: Decision
    subject: Subject
    result: dict[str, Any]  # decision.to_dict(), as logged
    result_json: str  # its JSON text, compact and ASCII: encoded once, for the log and answers
    answers: dict[str, Any] | None = None  # to the package's questions, as checked


def authorize(actor: Actor, subject_id: str) -> None:
    """The one check of who may ask for a decision about `subject_id`.

    Raises:
        ForbiddenError: an auditor (they read), or a user asking about someone else.
    """
    if actor.role not in DECIDERS:
        raise ForbiddenError("auditors read; they cannot ask for decisions")
    if actor.role is Role.USER and subject_id != actor.principal:
        raise ForbiddenError("users can only ask about themselves", field="subject.id")


class DecisionService:
    """Decisions and the decision log.

    Args:
        session: the session, or a function that opens it on first use (a decision on a
            cached subject, logged to the spool, needs none).
        log: where `decide` writes its log entries; without one, in the session's transaction.
        subjects: a cache of directory subjects that `decide` may use (never `evaluate`).
    """

    def __init__(
        self,
        session: Session | Callable[[], Session],
        runtime: PolicyRuntime,
        *,
        log: DecisionLog | None = None,
        subjects: SubjectCache | None = None,
    ):
        self._session = session
        self.runtime = runtime
        self.log = log
        self.subjects = subjects

    @property
    def session(self) -> Session:
        if not isinstance(self._session, Session):
            self._session = self._session()
        return self._session

    def _open_session(self) -> Session:
        return self.session

    def evaluate(
        self,
        actor: Actor,
        package: str,
        subject_id: str,
        supplied: Subject | None,
        request: RequestOptions,
        *,
        now: datetime,
    ) -> LoggedDecision:
        """Decide on fresh directory data and write the decision-log entry in the session's
        transaction (uncommitted)."""
        logged, entry = self._decide(actor, package, subject_id, supplied, request, now, None)
        # Its caller files the request that refers to it in this transaction: kept, so no
        # retention ever deletes (or drops the partition of) a request's evidence.
        entry["kept"] = True
        # A Core insert: the ORM's unit of work costs more than the rules engine here.
        self.session.connection().execute(_INSERT_LOG, [entry])
        return logged

    def decide(
        self,
        actor: Actor,
        package: str,
        subject_id: str,
        supplied: Subject | None,
        request: RequestOptions,
        *,
        now: datetime,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> LoggedDecision:
        """Decide with no side effect but the decision log (spooled; without a log, committed
        here). `defer` takes work that need not hold up the answer (a cached subject due for a
        refresh: the API runs it once the answer is sent).

        Raises:
            InvalidError: also when the database would refuse a value of the log entry.
        """
        if self.log is not None:
            logged, entry = self._decide(
                actor, package, subject_id, supplied, request, now, self.subjects, defer
            )
            entry["result"] = JsonText(logged.result_json)
            self.log.append(entry)
            return logged
        if self.session.get_bind().dialect.name == "postgresql":
            # The log is written on every call: skip the WAL flush wait (docs/storage.md).
            self.session.execute(text("SET LOCAL synchronous_commit TO OFF"))
        logged, entry = self._decide(
            actor, package, subject_id, supplied, request, now, self.subjects, defer
        )
        self.session.connection().execute(_INSERT_LOG, [entry])
        self.session.commit()
        return logged

    def _decide(
        self,
        actor: Actor,
        package: str,
        subject_id: str,
        supplied: Subject | None,
        request: RequestOptions,
        now: datetime,
        subjects: SubjectCache | None,
        defer: Callable[[Callable[[], None]], None] | None = None,
    ) -> tuple[LoggedDecision, dict[str, Any]]:
        authorize(actor, subject_id)
        trusted = actor.trusted or actor.role is Role.ADMIN
        subject = DirectoryService(self._open_session).resolve_subject(
            subject_id, supplied, trusted=trusted, cache=subjects, defer=defer
        )
        try:
            decision = self.runtime.decide(package, subject, request, now=now)
        except UnknownPackageError:
            raise NotFoundError(f"no access package {package!r}", field="package") from None
        except InvalidInputError as err:
            raise InvalidError(err.message, field=err.field) from None
        except LookupError:
            raise NotFoundError("no policy version is active; publish one first") from None
        policy = self.runtime.active
        if decision.stages and policy is not None and policy.version == decision.version:
            # Approvers as the request resolves them (sponsors too), by the same resolver.
            package_rules = policy.bundle.package(package)
            decision = with_resolved_approvers(decision, subject, package_rules, self._open_session)
        answers = _checked_answers(policy, decision.version, package, request)
        result = decision.to_dict()
        entry = dict(
            id=new_id(),
            at=now,
            package=package,
            subject_id=subject.id,
            outcome=decision.outcome.value,
            rule=decision.rule,
            matched=list(decision.matched),
            reason=decision.reason,
            version=decision.version,
            input={
                "subject": subject_view(subject),
                "request": {
                    "duration": request.duration,
                    "justification": request.justification,
                    **({"answers": answers} if answers else {}),
                },
                "now": now.isoformat(),
            },
            result=result,
            principal=actor.principal,
        )
        logged = LoggedDecision(
            entry["id"], decision, subject, result, _encode(result), answers or None
        )
        return logged, entry

    def catch_up(self) -> None:
        """Store what this host spooled, so that a read sees decisions answered a moment ago."""
        if self.log is None:
            return
        try:
            self.log.catch_up()
        except OperationalError:
            # Busy or unreachable: the drainer retries; this read may lag.
            logger.warning("decision log: could not store spooled entries before a read")

    def get(self, decision_id: str, actor: Actor | None = None) -> DecisionRecord:
        """A logged decision; an `actor` who may not see it gets NotFoundError too."""
        self.catch_up()
        record = self.session.get(DecisionRecord, decision_id)
        hidden = actor is not None and (
            (
                actor.role is Role.USER
                and record is not None
                and record.subject_id != actor.principal
            )
            or (
                actor.role is Role.APP
                and record is not None
                and record.principal != actor.principal
            )
        )
        if record is None or hidden:
            raise NotFoundError(f"no decision {decision_id!r}", field="id")
        return record

    def list(
        self,
        actor: Actor,
        *,
        subject: str | None = None,
        package: str | None = None,
        version: str | None = None,
        since: datetime | None = None,
        after: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[DecisionRecord], int | None]:
        self.catch_up()
        query = select(DecisionRecord)
        if actor.role is Role.USER:  # decisions about them
            query = query.where(DecisionRecord.subject_id == actor.principal)
        elif actor.role is Role.APP:  # decisions they asked for
            query = query.where(DecisionRecord.principal == actor.principal)
        if subject:
            query = query.where(DecisionRecord.subject_id == subject)
        if package:
            query = query.where(DecisionRecord.package == package)
        if version:
            query = query.where(DecisionRecord.version == version)
        if since:
            query = query.where(DecisionRecord.at >= since)
        query = query.order_by(DecisionRecord.at.desc(), DecisionRecord.id.desc())
        return list_page(self.session, query, after=after, offset=offset, limit=limit)
