"""Access reviews in rule files: the validated form, schedules, and engine-made recommendations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
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


def _ruleset_id(package_id: str, review_id: str) -> str:
    # ':' never appears in a package id, so these never clash with the packages' rulesets.
    return f"review:{package_id}:{review_id}"


class Advisor:
    """Recommendations of one bundle's reviews, matched by the rules engine (close it)."""

    def __init__(self, bundle: Bundle):
        self.reviews: dict[str, tuple[ReviewPolicy, AccessPackage]] = {}
        packages: dict[str, AccessPackage] = {}
        for package in bundle.packages.values():
            for review in package.reviews:
                if not review.recommendations:
                    continue
                ruleset = _ruleset_id(package.id, review.id)
                self.reviews[ruleset] = (review, package)
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
        self, package_id: str, review_id: str, subject: Subject, now: datetime
    ) -> Recommendation | None:
        """The review's recommendation for `subject`: a matched `remove` wins over `keep`,
        ties go to file order; None when no recommendation matches."""
        ruleset = _ruleset_id(package_id, review_id)
        if self.engine is None or ruleset not in self.reviews:
            return None
        fact = build_fact(self.compiled, subject, RequestOptions(), now)
        matched = self.engine.match(ruleset, fact)
        found = [rec for rec in self.reviews[ruleset][0].recommendations if rec.id in matched]
        removals = [rec for rec in found if rec.verdict is Verdict.REMOVE]
        return (removals or found or [None])[0]

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()


def reviews_of(bundle: Bundle) -> Mapping[tuple[str, str], ReviewPolicy]:
    """Every review of the bundle by (package id, review id)."""
    return {(p.id, r.id): r for p in bundle.packages.values() for r in p.reviews}
