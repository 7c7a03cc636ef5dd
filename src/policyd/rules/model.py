"""The validated, immutable content of a rule bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from policyd.domain import Outcome
from policyd.rules.condition import ALWAYS, Condition
from policyd.rules.timing import Window

API_VERSION = "policyd/v1"
# Ids of the deny rules the loader adds for separation of duties: the prefix, then the
# incompatible package or directory group.
SOD_PACKAGE = "incompatible:"
SOD_GROUP = "incompatible-group:"


class RequestedDuration(StrEnum):
    """What a requester's own choice of duration may do."""

    NONE = "none"  # the requested duration is ignored
    SHORTER = "shorter"  # may shorten the default, never lengthen it
    ANY = "any"  # may ask for any duration up to the maximum


@dataclass(frozen=True)
class LifetimePolicy:
    """How long granted access lasts: exactly one of duration, end_date, until or permanent."""

    duration: timedelta | None = None
    end_date: datetime | None = None
    until: Window | None = None
    maximum: timedelta | None = None
    requested: RequestedDuration = RequestedDuration.SHORTER
    extendable: bool = False
    permanent: bool = False  # no end: the access lasts until it is removed


@dataclass(frozen=True)
class StagePolicy:
    approvers: tuple[str, ...]
    timeout: timedelta
    escalate_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApprovalPolicy:
    stages: tuple[StagePolicy, ...]
    require_justification: bool = False


@dataclass(frozen=True)
class Rule:
    id: str
    outcome: Outcome
    when: Condition = ALWAYS
    priority: int = 0
    reason: str | None = None
    description: str | None = None
    approval: ApprovalPolicy | None = None
    lifetime: LifetimePolicy | None = None
    line: int = 0
    synthetic: bool = False  # made by the loader (incompatible packages, groups), not in a file
    questions: tuple[Question, ...] = ()  # asked only of requesters the rule applies to


class Verdict(StrEnum):
    """What a reviewer (or a recommendation) says about one person's access."""

    KEEP = "keep"
    REMOVE = "remove"


class NoResponse(StrEnum):
    """What happens to an item nobody decided when its campaign ends."""

    REMOVE = "remove"
    KEEP = "keep"
    RECOMMENDATION = "recommendation"  # the recommendation; keep where there is none


@dataclass(frozen=True)
class Recommendation:
    id: str
    verdict: Verdict
    when: Condition = ALWAYS
    reason: str | None = None


@dataclass(frozen=True)
class ReviewPolicy:
    """A recurring access review of one package's assignments."""

    id: str
    schedule: Window  # a campaign opens each time the cron fires
    duration: timedelta
    reviewers: tuple[str, ...]
    fallback: tuple[str, ...] = ()  # when the reviewers resolve to nobody
    reminders: tuple[timedelta, ...] = ()  # before the end, to reviewers with open items
    on_no_response: NoResponse = NoResponse.KEEP
    recommendations: tuple[Recommendation, ...] = ()
    description: str | None = None

    @property
    def self_review(self) -> bool:
        return "self" in self.reviewers or "self" in self.fallback


@dataclass(frozen=True)
class AutoAssignPolicy:
    """Who gets a package without asking (docs/rules.md, "Auto-assignment"): everyone whose
    subject matches `when`; they lose it `grace` after they stop matching (None: at once)."""

    when: Condition
    grace: timedelta | None = None
    description: str | None = None


class QuestionType(StrEnum):
    """What kind of answer a question takes."""

    TEXT = "text"
    CHOICE = "choice"  # one of `options`
    NUMBER = "number"  # between `minimum` and `maximum`, when given
    DATE = "date"  # an ISO-8601 calendar date, 2026-12-31


@dataclass(frozen=True)
class Question:
    """A question asked when a package is requested; its answer is `answers.<id>` in rules."""

    id: str
    type: QuestionType
    text: tuple[tuple[str, str], ...]  # (language tag, text); the tag is "" for plain text
    required: bool = False
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def text_for(self, language: str | None = None) -> str:
        """The text in `language` (or its primary subtag), else the first one written."""
        texts = dict(self.text)
        if language:
            for tag in (language, language.split("-")[0]):
                if tag in texts:
                    return texts[tag]
        return self.text[0][1]


@dataclass(frozen=True)
class ReminderPolicy:
    """A package's own reminders, instead of the service's settings (docs/notifications.md)."""

    expiry: tuple[timedelta, ...] | None = None  # before access ends, longest first; None: global
    approval: timedelta | None = None  # approvers reminded this often while a request waits


@dataclass(frozen=True)
class Resource:
    connector: str
    resource: str
    role: str = "member"
    line: int = field(default=0, compare=False)  # in its rule file, for error messages


@dataclass(frozen=True)
class AccessPackage:
    id: str
    display_name: str
    rules: tuple[Rule, ...]
    resources: tuple[Resource, ...] = ()
    description: str | None = None
    catalog: str | None = None
    owners: tuple[str, ...] = ()
    managers: tuple[str, ...] = ()  # `user:`/`group:` who administer its assignments
    incompatible_with: tuple[str, ...] = ()
    incompatible_groups: tuple[str, ...] = ()  # directory groups whose members are denied
    lifetime: LifetimePolicy | None = None
    questions: tuple[Question, ...] = ()  # asked at request time, in this order
    file: str = ""
    template: str | None = None  # the template that made it, if any
    template_row: str | None = None  # and the row: "scopes.csv:4"
    reviews: tuple[ReviewPolicy, ...] = ()  # recurring access reviews (docs/reviews.md)
    reminders: ReminderPolicy | None = None  # None: the service's settings
    auto_assign: AutoAssignPolicy | None = None  # assigned to whoever matches, unasked

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


@dataclass(frozen=True)
class Catalog:
    """A named group of packages whose owners administer the packages' assignments."""

    id: str
    display_name: str
    owners: tuple[str, ...] = ()  # `user:<id>` or `group:<id>`
    description: str | None = None
    packages: tuple[str, ...] = ()  # ids of the packages that name it, filled by the loader
    file: str = ""
    line: int = field(default=0, compare=False)
    reviews: tuple[ReviewPolicy, ...] = ()  # for its packages without reviews of their own


@dataclass(frozen=True)
class Version:
    """Where a bundle came from: a content hash and, if any, the git commit."""

    content_hash: str  # sha256 hex over the normalised rule files
    git_commit: str | None = None
    git_dirty: bool = False

    @property
    def id(self) -> str:
        return self.content_hash[:12]


@dataclass(frozen=True)
class Bundle:
    """Every access package of one publication, validated as a whole."""

    packages: dict[str, AccessPackage]
    version: Version
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    catalogs: dict[str, Catalog] = field(default_factory=dict)
    # package id -> its managers, for the packages that have any: delegation reads these
    # without decoding every package of a packed bundle
    managed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # package id -> its own reminders, for the packages that set them: the reminder task
    # reads these without decoding every package either
    reminders: dict[str, ReminderPolicy] = field(default_factory=dict)

    def package(self, package_id: str) -> AccessPackage:
        try:
            return self.packages[package_id]
        except KeyError:
            raise UnknownPackageError(package_id) from None

    @property
    def rule_count(self) -> int:
        return sum(len(p.rules) for p in self.packages.values())


class UnknownPackageError(LookupError):
    """A decision was asked for a package the active bundle does not define."""

    def __init__(self, package_id: str):
        self.package_id = package_id
        super().__init__(f"unknown package {package_id!r}")
