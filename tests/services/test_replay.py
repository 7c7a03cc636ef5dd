"""Replay: stored decision inputs decided again under a candidate, counted, nothing written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from policyd.domain import RequestOptions
from policyd.rules import Policy, load_texts
from policyd.services.actor import Actor, Role
from policyd.services.decisions import DecisionService
from policyd.services.errors import InvalidError, NotFoundError
from policyd.services.replay import NO_PACKAGE, UNREADABLE, ReplayReport, ReplayService
from policyd.services.versions import VersionService
from policyd.store.models import DecisionRecord
from tests.decision_support import decision_record
from tests.services.conftest import ROOT

APP = Actor("app", Role.APP)
SCOPE_A = "scope-a-readers.yaml"


@pytest.fixture
def logged(session, runtime, people, clock) -> list[str]:
    """Decisions about Scope A for ada (auto-approved) and bob (approval), an hour apart,
    and one about sales-support for sam (approval); their ids in time order."""
    decisions = DecisionService(session, runtime)
    ids = []
    for package, subject in (
        ("scope-a-readers", "ada"),
        ("scope-a-readers", "bob"),
        ("sales-support", "sam"),
    ):
        ids.append(
            decisions.evaluate(APP, package, subject, None, RequestOptions(), now=clock()).id
        )
        clock.advance(hours=1)
    return ids


@pytest.fixture
def replay(session) -> ReplayService:
    return ReplayService(session)


def denying(example_bundle) -> dict[str, str]:
    """The example rules with Scope A's eligible members denied instead of approved."""
    files = dict(example_bundle.files)
    files[SCOPE_A] = files[SCOPE_A].replace("decision: auto_approve", "decision: deny", 1)
    return files


def test_the_same_rules_change_no_decision(replay, logged, example_bundle):
    """Replayed under the rules that made them, every decision stands."""
    report, changes = replay.run(replay.candidate(files=example_bundle.files))
    assert (report.examined, report.changed, changes) == (3, 0, [])


def test_a_changed_rule_reports_each_changed_decision(replay, logged, example_bundle):
    """Denying eligible members changes ada's decision only, counted per transition."""
    report, changes = replay.run(replay.candidate(files=denying(example_bundle)))
    (change,) = changes
    assert (change.decision_id, change.subject_id, change.package) == (
        logged[0],
        "ada",
        "scope-a-readers",
    )
    assert (change.before, change.after) == (
        ("auto_approve", "eligible-members"),
        ("deny", "eligible-members"),
    )
    assert report.to_dict()["counts"] == [
        {"package": "scope-a-readers", "from": "auto_approve", "to": "deny", "decisions": 1}
    ]


def test_filters_narrow_what_is_examined(replay, logged, example_bundle, clock):
    """`package` and `since` limit the decisions examined (and counted)."""
    candidate = replay.candidate(files=denying(example_bundle))
    report, _ = replay.run(candidate, package="sales-support")
    assert (report.examined, report.changed) == (1, 0)
    since = clock() - timedelta(hours=2)  # bob's and sam's
    report, _ = replay.run(candidate, since=since)
    assert (report.examined, report.changed) == (2, 0)
    assert replay.count(since=since, package="scope-a-readers") == 1


def test_a_package_the_candidate_drops_and_an_unreadable_input_are_changes(
    session, replay, logged, example_bundle, clock
):
    """Without Scope A its decisions become `no such package`; an input the candidate
    cannot read is `unreadable input`, not an error."""
    session.add(decision_record("zz-unreadable", clock()))
    files = {name: text for name, text in example_bundle.files.items() if name != SCOPE_A}
    report, changes = replay.run(replay.candidate(files=files))
    assert [change.after for change in changes] == [(NO_PACKAGE, None)] * 2 + [(UNREADABLE, None)]
    assert (report.examined, report.changed) == (4, 3)


def test_the_list_stops_at_the_limit_but_the_report_counts_all(replay, logged, example_bundle):
    files = {name: text for name, text in example_bundle.files.items() if name != SCOPE_A}
    report, changes = replay.run(replay.candidate(files=files), limit=1)
    assert (len(changes), report.changed) == (1, 2)


def test_small_batches_see_every_decision_once(replay, logged, example_bundle):
    """The keyset walk in batches of one finds the same changes, in id order."""
    files = {name: text for name, text in example_bundle.files.items() if name != SCOPE_A}
    candidate = load_texts(files)
    policy = Policy(candidate)
    try:
        report = ReplayReport(candidate.version.id)
        batches: list[int] = []
        changes = list(replay.replay(policy, report, progress=batches.append, batch=1))
    finally:
        policy.close()
    assert [change.decision_id for change in changes] == logged[:2]
    assert batches == [1, 1, 1]


def test_more_decisions_than_allowed_is_invalid_naming_since(replay, logged, example_bundle):
    """Past max_examined the replay is refused before it starts."""
    with pytest.raises(InvalidError) as err:
        replay.run(replay.candidate(files=example_bundle.files), max_examined=2)
    assert err.value.field == "since"
    report, _ = replay.run(replay.candidate(files=example_bundle.files), max_examined=3)
    assert report.examined == 3


def test_replay_writes_nothing(session, replay, logged, example_bundle):
    replay.run(replay.candidate(files=denying(example_bundle)))
    assert session.scalar(select(func.count()).select_from(DecisionRecord)) == 3


def test_a_published_version_is_a_candidate(session, replay, example_bundle, clock):
    """candidate(version=...) loads a stored version's files; an unknown one is 404."""
    version = VersionService(session).publish(ROOT, example_bundle.files, message="m", now=clock())
    assert replay.candidate(version=version.id).version.id == version.id
    with pytest.raises(NotFoundError):
        replay.candidate(version="nope")


@pytest.mark.parametrize("given", [{}, {"version": "v", "files": {}}], ids=["none", "both"])
def test_a_candidate_is_a_version_or_files_not_both(replay, given):
    with pytest.raises(InvalidError) as err:
        replay.candidate(**given)
    assert err.value.field == "version"


def test_candidate_files_with_errors_are_invalid_with_each_problem(replay):
    with pytest.raises(InvalidError) as err:
        replay.candidate(files={"bad.yaml": "apiVersion: policyd/v1\npackage: {id: x}\n"})
    assert err.value.field == "files"
    assert err.value.errors and err.value.errors[0].startswith("bad.yaml:")
