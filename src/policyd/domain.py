"""Plain data shared by every layer: subjects, requests, decisions."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar


class Outcome(StrEnum):
    """What a decision says about a request."""

    AUTO_APPROVE = "auto_approve"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"


class UserType(StrEnum):
    MEMBER = "member"
    GUEST = "guest"


@dataclass(frozen=True)
class Subject:
    """The person access is decided for, as the rules see them."""

    id: str
    email: str | None = None
    type: UserType = UserType.MEMBER
    groups: frozenset[str] = frozenset()
    manager: str | None = None
    organization: str | None = None
    packages: frozenset[str] = frozenset()
    department: str | None = None
    job_title: str | None = None
    employee_type: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def domain(self) -> str | None:
        """The email domain, lower-cased; None without a usable email."""
        if not self.email or "@" not in self.email:
            return None
        domain = self.email.rsplit("@", 1)[1].strip().lower()
        return domain or None


@dataclass(frozen=True)
class RequestOptions:
    """What the requester asks for besides the package."""

    duration: str | None = None  # ISO-8601 duration as written by the requester
    justification: str | None = None
    # The requester's answers to the package's questions (question id -> value); see
    # docs/rules.md, "Questions". Checked against the package when a decision is made; None
    # when nobody was asked (then no question is required), {} for "asked, nothing answered".
    answers: Mapping[str, Any] | None = field(default=None, hash=False)

    @property
    def has_justification(self) -> bool:
        return bool(self.justification and self.justification.strip())


@dataclass(frozen=True)
class ApprovalStage:
    """One stage of approval as the deciding rule asks for it."""

    approvers: tuple[str, ...]
    timeout: timedelta
    escalate_to: tuple[str, ...] = ()
    # Approver references resolved with what the decision knows (manager id, package owners);
    # group and sponsor references are expanded later through the directory.
    resolved: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedLifetime:
    """When granted access ends, and why it ends then."""

    expires_at: datetime | None
    explanation: str
    clamped: bool = False
    extendable: bool = False
    # The terms `expires_at` came from, so that access granted later than `now` still gets
    # its whole lifetime: how long it lasts from its start (a duration, a requested one, a
    # maximum), and the fixed moment it may not outlast (an end date, a cron's next fire).
    span: timedelta | None = None
    not_after: datetime | None = None

    def ends(self, start: datetime) -> datetime | None:
        """When access granted at `start` ends under these terms (None: it does not)."""
        ends = [moment for moment in (self.not_after,) if moment is not None]
        if self.span is not None:
            ends.append(start + self.span)
        return min(ends) if ends else self.expires_at


@dataclass(frozen=True)
class Decision:
    """The answer to "may this subject have this package now?" with its explanation."""

    outcome: Outcome
    package: str
    rule: str | None
    matched: tuple[str, ...]
    reason: str
    version: str
    now: datetime
    lifetime: ResolvedLifetime | None = None
    stages: tuple[ApprovalStage, ...] = ()
    justification_required: bool = False
    template: tuple[str, str] | None = None  # (template id, row) of a generated package

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, stable for machines (CLI --json, API)."""
        lifetime = None
        if self.lifetime is not None:
            lifetime = {
                "expires_at": _iso(self.lifetime.expires_at),
                "explanation": self.lifetime.explanation,
                "clamped": self.lifetime.clamped,
                "extendable": self.lifetime.extendable,
            }
        return {
            "decision": self.outcome.value,
            "package": self.package,
            "rule": self.rule,
            "matched": list(self.matched),
            "reason": self.reason,
            "version": self.version,
            "template": (
                {"id": self.template[0], "row": self.template[1]} if self.template else None
            ),
            "now": _iso(self.now),
            "lifetime": lifetime,
            "approval": {
                "justification_required": self.justification_required,
                "stages": [
                    {
                        "approvers": list(stage.approvers),
                        "resolved": list(stage.resolved),
                        "timeout": _iso_duration(stage.timeout),
                        "escalate_to": list(stage.escalate_to),
                    }
                    for stage in self.stages
                ],
            },
        }


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


# A policy has a few stage timeouts, written on every decision that asks for approval.
@functools.lru_cache(maxsize=256)
def _iso_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "P" + (f"{days}D" if days else "")
    time = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    time += f"{seconds}S" if seconds else ""
    if time:
        text += "T" + time
    return text if text != "P" else "PT0S"


class RequestState(StrEnum):
    """Where an access request is in its lifecycle (docs/lifecycle.md)."""

    SUBMITTED = "submitted"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    PARTIALLY_DELIVERED = "partially_delivered"
    DENIED = "denied"
    CANCELED = "canceled"
    EXPIRED = "expired"
    FAILED = "failed"


class AssignmentState(StrEnum):
    """Where granted access is: being delivered, held, being taken away, gone."""

    DELIVERING = "delivering"
    ACTIVE = "active"
    EXPIRING = "expiring"
    REMOVED = "removed"
    FAILED = "failed"


class JobState(StrEnum):
    """Where an outbox job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class OrganizationState(StrEnum):
    """Where a connected organisation is: proposed by a request from an unknown domain,
    configured by an admin, or removed (its guests lose their access)."""

    PROPOSED = "proposed"
    CONFIGURED = "configured"
    REMOVED = "removed"


class PublicationState(StrEnum):
    """Where a bundle accepted over the API for publishing is."""

    QUEUED = "queued"  # accepted; a worker publishes it next
    ACTIVE = "active"  # stored as a version and activated
    REJECTED = "rejected"  # the bundle has errors; nothing was stored


_R, _A, _J, _O, _P = RequestState, AssignmentState, JobState, OrganizationState, PublicationState

# Every move a request may make. A waiting request moves to pending_approval again when it
# enters its next stage; an approved one is delivered at once when it extends access already
# in place, or expires when its access window closed before approval. A leaver's open
# requests are canceled in any open state.
REQUEST_TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    _R.SUBMITTED: frozenset({_R.PENDING_APPROVAL, _R.APPROVED, _R.DENIED, _R.CANCELED}),
    _R.PENDING_APPROVAL: frozenset(
        {_R.PENDING_APPROVAL, _R.APPROVED, _R.DENIED, _R.CANCELED, _R.EXPIRED}
    ),
    _R.APPROVED: frozenset({_R.DELIVERING, _R.DELIVERED, _R.EXPIRED, _R.CANCELED}),
    _R.DELIVERING: frozenset({_R.DELIVERED, _R.PARTIALLY_DELIVERED, _R.FAILED, _R.CANCELED}),
    # A retried grant job settles a failed delivery again.
    _R.FAILED: frozenset({_R.DELIVERED, _R.PARTIALLY_DELIVERED}),
    _R.PARTIALLY_DELIVERED: frozenset({_R.DELIVERED}),
    _R.DELIVERED: frozenset(),
    _R.DENIED: frozenset(),
    _R.CANCELED: frozenset(),
    _R.EXPIRED: frozenset(),
}

# Access is delivered (active) or fails (retryable); live access ends by expiring, removed
# once every revoke is done.
ASSIGNMENT_TRANSITIONS: dict[AssignmentState, frozenset[AssignmentState]] = {
    _A.DELIVERING: frozenset({_A.ACTIVE, _A.FAILED, _A.EXPIRING}),
    _A.FAILED: frozenset({_A.ACTIVE, _A.EXPIRING}),
    _A.ACTIVE: frozenset({_A.EXPIRING}),
    _A.EXPIRING: frozenset({_A.REMOVED}),
    _A.REMOVED: frozenset(),
}

# A running job whose lease lapsed is claimed again (running to running); one that fails
# retryably, or whose worker is known dead, is queued again; an operator retries a failed
# one. Queued grants of ending access fail unrun, and notifications with no notifier are
# done unrun.
JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _J.QUEUED: frozenset({_J.RUNNING, _J.DONE, _J.FAILED}),
    _J.RUNNING: frozenset({_J.RUNNING, _J.QUEUED, _J.DONE, _J.FAILED}),
    _J.FAILED: frozenset({_J.QUEUED}),
    _J.DONE: frozenset(),
}

# An admin configures a proposed organisation (or sets a configured one back to proposed,
# as Entra allows); either may be removed, which ends it.
ORGANIZATION_TRANSITIONS: dict[OrganizationState, frozenset[OrganizationState]] = {
    _O.PROPOSED: frozenset({_O.PROPOSED, _O.CONFIGURED, _O.REMOVED}),
    _O.CONFIGURED: frozenset({_O.CONFIGURED, _O.PROPOSED, _O.REMOVED}),
    _O.REMOVED: frozenset(),
}

# Every publication moves once, from queued to one of the two ends.
PUBLICATION_TRANSITIONS: dict[PublicationState, frozenset[PublicationState]] = {
    _P.QUEUED: frozenset({_P.ACTIVE, _P.REJECTED}),
    _P.ACTIVE: frozenset(),
    _P.REJECTED: frozenset(),
}

State = RequestState | AssignmentState | JobState | OrganizationState | PublicationState
S = TypeVar("S", RequestState, AssignmentState, JobState, OrganizationState, PublicationState)

TRANSITIONS: dict[type, dict[Any, frozenset[Any]]] = {
    RequestState: REQUEST_TRANSITIONS,
    AssignmentState: ASSIGNMENT_TRANSITIONS,
    JobState: JOB_TRANSITIONS,
    OrganizationState: ORGANIZATION_TRANSITIONS,
    PublicationState: PUBLICATION_TRANSITIONS,
}

_NOUNS = {
    RequestState: "request",
    AssignmentState: "assignment",
    JobState: "job",
    OrganizationState: "organization",
    PublicationState: "publication",
}


class IllegalTransitionError(ValueError):
    """A state change the transition table does not allow (the API answers 409)."""

    def __init__(self, kind: str, current: str, new: str):
        self.kind, self.current, self.new = kind, current, new
        super().__init__(f"{kind} is {current}; it cannot become {new}")


def allowed(current: str, new: State) -> bool:
    """Whether the table lets an object in state `current` move to `new`."""
    return new in TRANSITIONS[type(new)][type(new)(current)]


def transition(current: str, new: S) -> S:
    """Check the move from `current` (a stored state) to `new`; returns `new`.

    Raises:
        IllegalTransitionError: the table does not allow it.
    """
    kind = type(new)
    if new not in TRANSITIONS[kind][kind(current)]:
        raise IllegalTransitionError(_NOUNS[kind], str(current), str(new))
    return new
