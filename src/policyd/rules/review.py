"""Access reviews in rule files: the validated form, schedules, and engine-made recommendations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

from policyd.domain import Outcome, RequestOptions, Subject
from policyd.rules.compiler import compile_bundle
from policyd.rules.condition import as_number
from policyd.rules.engine import Engine
from policyd.rules.facts import build_fact
from policyd.rules.model import (
    AccessPackage,
    Bundle,
    Catalog,
    Recommendation,
    ReviewPolicy,
    Rule,
    Verdict,
)
from policyd.rules.timing import Window

# Attributes derived for recommendations (docs/reviews.md): a connector or an import reports
# `lastSignIn`; the service knows whether a guest's sponsors have left.
LAST_SIGN_IN = "lastSignIn"
DAYS_SINCE_SIGN_IN = "daysSinceSignIn"
SPONSOR_LEFT = "sponsorLeft"


def last_start(review: ReviewPolicy, now: datetime) -> datetime | None:
    """The latest time at or before `now` the review's schedule fired, in UTC; None if it
    never did within a year before `now`."""
    if len(review.schedule.cron.split()) == 5:
        # Five-field crons fire on whole minutes, so one answer serves the whole minute (and
        # every package a template made with the same schedule).
        return _last_fire(review.schedule, now.astimezone(UTC).replace(second=0, microsecond=0))
    return _last_fire.__wrapped__(review.schedule, now)


@lru_cache(maxsize=1024)
def _last_fire(schedule: Window, now: datetime) -> datetime | None:
    probe = now.astimezone(ZoneInfo(schedule.timezone)) + timedelta(seconds=1)  # `now` counts
    try:
        fired = croniter(schedule.cron, probe, max_years_between_matches=1).get_prev(datetime)
    except Exception:  # croniter raises its own errors when nothing fires in range
        return None
    return fired.astimezone(UTC)


def overlap_problem(schedule: Window, duration: timedelta) -> str | None:
    """Why campaigns of this schedule and duration would overlap, if they would."""
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo(schedule.timezone))
    fires = croniter(schedule.cron, start, max_years_between_matches=5)
    first = fires.get_next(datetime)
    for _ in range(8):
        second = fires.get_next(datetime)
        if second - first < duration:
            return (
                f"campaigns would overlap: a campaign lasts {_span(duration)}, but the "
                f"schedule fires again after {_span(second - first)}"
            )
        first = second
    return None


def _span(delta: timedelta) -> str:
    if delta % timedelta(days=1):
        return str(delta)
    return f"{delta.days} day" + ("s" if delta.days != 1 else "")


def review_subject(subject: Subject, now: datetime, *, sponsor_left: bool | None = None) -> Subject:
    """The subject with the derived review attributes: whole days since `lastSignIn` (when
    it is known) and, for a guest, whether every sponsor has left."""
    extra: dict[str, object] = {}
    signed_in = _moment(subject.attributes.get(LAST_SIGN_IN))
    if signed_in is not None:
        extra[DAYS_SINCE_SIGN_IN] = max((now - signed_in).days, 0)
    if sponsor_left is not None:
        extra[SPONSOR_LEFT] = "true" if sponsor_left else "false"
    if not extra:
        return subject
    return replace(subject, attributes={**subject.attributes, **extra})


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    number = as_number(value)  # epoch seconds
    return datetime.fromtimestamp(number, UTC) if number is not None else None


CATALOG_SCOPE = "catalog:"  # ':' never appears in a package id


@dataclass(frozen=True)
class ReviewScope:
    """What one review covers: a package's review its package, a catalog's review the
    catalog's packages without reviews of their own (docs/reviews.md)."""

    id: str  # the package id, or `catalog:<id>`: what a campaign records as its package
    review: ReviewPolicy
    packages: tuple[str, ...]
    owners: tuple[str, ...]  # who the reviewer `owners` means


def review_scopes(bundle: Bundle) -> list[ReviewScope]:
    """Every review of the bundle with what it covers; packages' reviews first."""
    scopes = [s for package in bundle.packages.values() for s in _package_scopes(package)]
    for catalog in bundle.catalogs.values():
        scopes.extend(_catalog_scopes(bundle, catalog))
    return scopes


def find_scope(bundle: Bundle, scope_id: str, review_id: str) -> ReviewScope | None:
    """The scope of one campaign's review in `bundle`; None when it no longer declares it."""
    if scope_id.startswith(CATALOG_SCOPE):
        catalog = bundle.catalogs.get(scope_id.removeprefix(CATALOG_SCOPE))
        scopes = _catalog_scopes(bundle, catalog) if catalog is not None else []
    else:
        package = bundle.packages.get(scope_id)
        scopes = _package_scopes(package) if package is not None else []
    return next((s for s in scopes if s.review.id == review_id), None)


def _package_scopes(package: AccessPackage) -> list[ReviewScope]:
    return [ReviewScope(package.id, r, (package.id,), package.owners) for r in package.reviews]


def _catalog_scopes(bundle: Bundle, catalog: Catalog) -> list[ReviewScope]:
    if not catalog.reviews:
        return []
    # a package's own reviews win over its catalog's
    covered = tuple(p for p in catalog.packages if not bundle.packages[p].reviews)
    scope_id = CATALOG_SCOPE + catalog.id
    return [ReviewScope(scope_id, r, covered, catalog.owners) for r in catalog.reviews]


def _ruleset_id(scope_id: str, review_id: str) -> str:
    # ':' never appears in a package id, so these never clash with the packages' rulesets.
    return f"review:{scope_id}:{review_id}"


class Advisor:
    """Recommendations of one bundle's reviews, matched by the rules engine (close it)."""

    def __init__(self, bundle: Bundle):
        self.reviews: dict[str, ReviewPolicy] = {}
        packages: dict[str, AccessPackage] = {}
        for scope in review_scopes(bundle):
            review = scope.review
            if review.recommendations:
                ruleset = _ruleset_id(scope.id, review.id)
                self.reviews[ruleset] = review
                packages[ruleset] = AccessPackage(
                    id=ruleset,
                    display_name=ruleset,
                    rules=tuple(
                        Rule(
                            id=rec.id,
                            when=rec.when,
                            outcome=Outcome.DENY
                            if rec.verdict is Verdict.REMOVE
                            else Outcome.AUTO_APPROVE,
                        )
                        for rec in review.recommendations
                    ),
                )
        self.compiled = compile_bundle(Bundle(packages=packages, version=bundle.version))
        self.engine = Engine(self.compiled, memo_size=0) if packages else None

    def recommend(
        self, scope_id: str, review_id: str, subject: Subject, now: datetime
    ) -> Recommendation | None:
        """The review's recommendation for `subject` (`scope_id`: the package, or
        `catalog:<id>`): a matched `remove` wins over `keep`, ties go to file order; None
        when no recommendation matches."""
        ruleset = _ruleset_id(scope_id, review_id)
        if self.engine is None or ruleset not in self.reviews:
            return None
        fact = build_fact(self.compiled, subject, RequestOptions(), now)
        matched = self.engine.match(ruleset, fact)
        found = [rec for rec in self.reviews[ruleset].recommendations if rec.id in matched]
        removals = [rec for rec in found if rec.verdict is Verdict.REMOVE]
        return (removals or found or [None])[0]

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def reviews_of(bundle: Bundle) -> Mapping[tuple[str, str], ReviewPolicy]:
    """Every review of the bundle by (package id, review id)."""
    return {(p.id, r.id): r for p in bundle.packages.values() for r in p.reviews}
