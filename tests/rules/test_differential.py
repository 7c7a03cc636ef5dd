"""Differential test: durable_rules must match exactly the rules the reference oracle says hold."""

from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from policyd.domain import RequestOptions, Subject, UserType
from policyd.rules import Policy, ProblemsError, choose, load_texts
from policyd.rules.condition import FIELDS, Kind
from policyd.rules.packed import pack_bundle, unpack_bundle
from tests.rules.oracle import oracle_matched

TARGET = int(os.environ.get("POLICYD_DIFFERENTIAL_EXAMPLES", "10000"))
SUBJECTS_PER_BUNDLE = 10
# Bundles too complex for durable_rules are rejected and do not count; the total is asserted.
BUNDLES = math.ceil(TARGET / SUBJECTS_PER_BUNDLE) + 5
PACKAGES = ("pkg-a", "pkg-b")

ATTRIBUTE_KEYS = ("k", "n", "level")
TEXT_FIELDS = [name for name, kind in FIELDS.items() if kind is Kind.TEXT]
ATTRIBUTE_FIELDS = [f"subject.attributes.{key}" for key in ATTRIBUTE_KEYS]
# Both packages ask these; rules compare answers like attributes (text, or number to order).
QUESTIONS = [
    {"id": "ticket", "text": "Ticket", "type": "text"},
    {"id": "team", "text": "Team", "type": "choice", "options": ["a", "b", "1", " a"]},
    {"id": "hours", "text": {"en": "Hours"}, "type": "number"},
]
ANSWER_FIELDS = ["answers.ticket", "answers.team", "answers.hours"]
TICKETS = [None, "", "  ", "a", " a ", "b", "1", "1.0", " 2 ", "true", "é", "1e3", "2024-01-01"]
TEAMS = [None, "a", "b", "1", " a"]
HOURS = [None, 0, 1, 1.0, 1.5, 2, -1, 1000, 1e16, 2.5e-05, -0.0, -2e20]

RULE_TEXTS = ["a", "b", "A", "1", 1, 1.0, "1.0", 2, True, "true", "é", 'q"t', date(2024, 1, 1)]
RULE_EMAILS = ["x@fab.com", "X@Fab.com", "y@fab.com", "a"]
RULE_DOMAINS = ["fab.com", "Fab.com", "other.org", "a"]
RULE_TYPES = ["member", "guest", "Guest"]
# 1e16, 1e-05 and -1e20 have no decimal point in their JSON form, which durable_rules misreads.
RULE_NUMBERS = [0, 1, 1.0, 1.5, 2, -1, "1", "2.5", 1000, 1e16, 1e-05, 2.5e-05, -1e20, "1e16"]
RULE_GROUPS = ["a", "b", "G.x", "1", 1]
RULE_DURATIONS = ["PT1H", "PT8H", "P1D", "P28D", "P30D", "P31D"]
WINDOWS = [
    "* 8-17 * * 1-5",
    {"cron": "* 9-17 * * 1-5", "timezone": "Europe/Paris"},
    "0-29 * * * *",
]

SUBJECT_TEXTS = [None, "", "a", "b", "A", "1", "1.0", " 1 ", "true", "é", 'q"t', "2024-01-01"]
SUBJECT_EMAILS = [None, "", "x@Fab.com", "X@fab.com", " y@fab.com ", "a", "b@", "z@other.org"]
ATTRIBUTE_VALUES = [
    *("a", "b", "1", 1, 1.0, 1.5, "1.0", 2, 0, -1, True, False, " 2 ", "x", "1e3", 1000),
    *(1e16, 9.99e15, 2e300, 1e-05, 2.5e-05, -0.0, -2e20, "1e16"),
    *(None, "", float("nan"), float("inf"), date(2024, 1, 1), ["a"]),
]
GROUP_ITEMS = ["a", "b", "G.x", "1", ""]
PACKAGE_ITEMS = ["pkg-a", "pkg-b", "other"]
DURATIONS = [None, "PT8H", "P1D", "P30D", "P1M", "PT0.5S", "P1Y"]
JUSTIFICATIONS = [None, "", "  ", "because"]
MOMENTS = [
    datetime(2026, 1, 5, 9, 15, 30, tzinfo=UTC),  # Monday morning
    datetime(2026, 1, 10, 3, 45, tzinfo=UTC),  # Saturday night
    datetime(2026, 7, 6, 16, 30, tzinfo=UTC),  # Monday, 18:30 in Paris
    datetime(2026, 2, 2, 7, 30, tzinfo=timezone(timedelta(hours=1))),  # February: P1M = 28 days
    datetime(2026, 3, 29, 1, 30, tzinfo=UTC),  # the night Paris moves to summer time
]


def _values(field: str) -> list:
    if field == "subject.email":
        return RULE_EMAILS
    if field == "subject.domain":
        return RULE_DOMAINS
    if field == "subject.type":
        return RULE_TYPES
    return RULE_TEXTS


def _text_spec(field: str, ordered: bool):
    values = st.sampled_from(_values(field))
    choices = [
        values,  # plain value: eq
        st.fixed_dictionaries({"eq": values}),
        st.fixed_dictionaries({"ne": values}),
        st.fixed_dictionaries({"in": st.lists(values, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not_in": st.lists(values, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"exists": st.booleans()}),
        st.fixed_dictionaries({"ne": values, "exists": st.booleans()}),
    ]
    if ordered:
        numbers = st.sampled_from(RULE_NUMBERS)
        choices += [st.fixed_dictionaries({op: numbers}) for op in ("lt", "le", "gt", "ge")] + [
            st.fixed_dictionaries({"gt": numbers, "le": numbers})
        ]
    return st.one_of(choices)


def _list_spec(field: str):
    values = st.sampled_from(RULE_GROUPS if field == "subject.groups" else list(PACKAGES))
    return st.one_of(
        values,  # plain value: contains
        st.fixed_dictionaries({"contains": values}),
        st.fixed_dictionaries({"not_contains": values}),
        st.fixed_dictionaries({"contains_any": st.lists(values, min_size=1, max_size=3)}),
    )


def _duration_spec():
    durations = st.sampled_from(RULE_DURATIONS)
    return st.one_of(
        st.fixed_dictionaries({"exists": st.booleans()}),
        *(st.fixed_dictionaries({op: durations}) for op in ("lt", "le", "gt", "ge")),
    )


FIELD_SPECS = st.one_of(
    *(st.tuples(st.just(f), _text_spec(f, ordered=False)) for f in TEXT_FIELDS),
    *(st.tuples(st.just(f), _text_spec(f, ordered=True)) for f in ATTRIBUTE_FIELDS),
    *(st.tuples(st.just(f), _text_spec(f, ordered=True)) for f in ANSWER_FIELDS),
    *(st.tuples(st.just(f), _list_spec(f)) for f in ("subject.groups", "subject.packages")),
    st.tuples(st.just("request.duration"), _duration_spec()),
    st.tuples(st.just("request.justification"), st.fixed_dictionaries({"exists": st.booleans()})),
    st.tuples(st.just("now"), st.fixed_dictionaries({"within": st.sampled_from(WINDOWS)})),
)


@st.composite
def conditions(draw, depth: int = 3) -> dict:
    """A `when` mapping with combinators nested at most `depth` deep."""
    kinds = ["field"] * 4 + (["all", "any", "not"] if depth > 0 else [])
    mapping: dict = {}
    for _ in range(draw(st.sampled_from([1, 1, 2]))):
        kind = draw(st.sampled_from(kinds))
        if kind == "field":
            field, spec = draw(FIELD_SPECS)
            mapping.setdefault(field, spec)
        elif kind == "not":
            mapping.setdefault("not", draw(conditions(depth - 1)))
        else:
            items = draw(st.lists(conditions(depth - 1), min_size=1, max_size=3))
            mapping.setdefault(kind, items)
    return mapping


@st.composite
def rules(draw, count: int) -> list[dict]:
    out = []
    for number in range(count):
        rule: dict = {"id": f"r{number}"}
        priority = draw(st.sampled_from([None, 0, 1, 5]))
        if priority is not None:
            rule["priority"] = priority
        if draw(st.integers(0, 9)):  # a rule without `when` now and then
            rule["when"] = draw(conditions())
        decision = draw(st.sampled_from(["deny", "auto_approve", "require_approval"]))
        then: dict = {"decision": decision, "reason": f"r{number} decided"}
        if decision == "require_approval":
            then["approval"] = {"stages": [{"approvers": ["manager"]}]}
        rule["then"] = then
        out.append(rule)
    return out


@st.composite
def bundle_texts(draw) -> dict[str, str]:
    texts = {}
    for package_id in PACKAGES:
        package: dict = {
            "id": package_id,
            "displayName": package_id.upper(),
            "lifetime": {"duration": "P30D"},
            "questions": QUESTIONS,
            "rules": draw(rules(draw(st.integers(1, 4)))),
        }
        if package_id == "pkg-a" and draw(st.booleans()):
            package["incompatibleWith"] = ["pkg-b"]
        if package_id == "pkg-b" and draw(st.booleans()):
            groups = st.sampled_from([g for g in GROUP_ITEMS if g])
            package["incompatibleGroups"] = draw(st.lists(groups, min_size=1, max_size=2))
        document = {"apiVersion": "policyd/v1", "package": package}
        texts[f"{package_id}.yaml"] = yaml.safe_dump(document, allow_unicode=True)
    return texts


SUBJECTS = st.builds(
    Subject,
    id=st.sampled_from(["a", "b", "A", "1", ""]),
    email=st.sampled_from(SUBJECT_EMAILS),
    type=st.sampled_from([UserType.MEMBER, UserType.GUEST]),
    groups=st.frozensets(st.sampled_from(GROUP_ITEMS), max_size=3),
    manager=st.sampled_from(SUBJECT_TEXTS),
    organization=st.sampled_from(SUBJECT_TEXTS),
    packages=st.frozensets(st.sampled_from(PACKAGE_ITEMS), max_size=2),
    department=st.sampled_from(SUBJECT_TEXTS),
    job_title=st.sampled_from(SUBJECT_TEXTS),
    employee_type=st.sampled_from(SUBJECT_TEXTS),
    attributes=st.dictionaries(
        st.sampled_from(ATTRIBUTE_KEYS), st.sampled_from(ATTRIBUTE_VALUES), max_size=3
    ),
)
CASES = st.tuples(
    SUBJECTS,
    st.builds(
        RequestOptions,
        duration=st.sampled_from(DURATIONS),
        justification=st.sampled_from(JUSTIFICATIONS),
        answers=st.fixed_dictionaries(
            {},
            optional={
                "ticket": st.sampled_from(TICKETS),
                "team": st.sampled_from(TEAMS),
                "hours": st.sampled_from(HOURS),
            },
        ),
    ),
    st.sampled_from(MOMENTS),
)


@pytest.mark.slow
def test_engine_matches_exactly_what_the_oracle_says():
    """For every generated rule set and subject, the engine, deciding from the packed form,
    matches exactly the oracle's rules."""
    evaluated: list[int] = []
    too_complex: list[int] = []

    @settings(
        max_examples=BUNDLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        texts=bundle_texts(),
        cases=st.lists(CASES, min_size=SUBJECTS_PER_BUNDLE, max_size=SUBJECTS_PER_BUNDLE),
    )
    def check(texts: dict[str, str], cases: list) -> None:
        try:
            bundle = load_texts(texts)
        except ProblemsError as err:
            # The loader refuses what durable_rules cannot evaluate (15 $and/$or per rule);
            # anything it accepts must build and decide without an engine error.
            if "too complex for the engine" not in str(err):
                raise
            too_complex.append(1)
            reject()
        # Decided as a process does: from the packed form stored at publication, with room
        # for one compiled package, so packages are released and compiled again as they go.
        policy = Policy(unpack_bundle(pack_bundle(bundle)), resident=1)
        try:
            for subject, request, now in cases:
                for package_id in PACKAGES:
                    package = bundle.package(package_id)
                    expected = oracle_matched(package, subject, request, now)
                    decision = policy.decide(package_id, subject, request, now=now)
                    where = f"{package_id} for {subject!r}, {request!r} at {now.isoformat()}"
                    assert set(decision.matched) == expected, where
                    winner = choose(package.rules, expected)
                    assert decision.rule == (winner.id if winner else None), where
                evaluated.append(1)
        finally:
            policy.close()

    check()
    skipped = f"{len(too_complex)} bundles were too complex for durable_rules"
    assert sum(evaluated) >= TARGET, f"only {sum(evaluated)} cases; {skipped}"
