"""Answers at the service level: checked, stored with the request, audited, logged, replayed."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_bundle, load_texts
from policyd.services.actor import Actor, Role
from policyd.services.errors import InvalidError, NotFoundError
from policyd.services.questions import QuestionService
from policyd.services.replay import ReplayService
from policyd.services.requests import RequestService
from policyd.store.models import AuditRecord, DecisionRecord
from tests.api.test_questions import INCIDENT
from tests.conftest import POLICIES

BOB = Actor("bob", Role.USER)


@pytest.fixture
def requests(session, people):
    files = {**load_bundle(POLICIES).files, "incident-access.yaml": INCIDENT}
    runtime = PolicyRuntime(load_texts(files))
    yield RequestService(session, runtime)
    runtime.close()


def file(requests, clock, answers):
    options = RequestOptions(answers=answers)
    request, _ = requests.create(BOB, "incident-access", "bob", None, options, now=clock())
    return request


def test_a_missing_required_answer_is_an_invalid_error_naming_it(requests, clock):
    """Filing without the required ticket raises InvalidError on answers.ticket."""
    with pytest.raises(InvalidError) as caught:
        file(requests, clock, {"severity": "sev2"})
    assert caught.value.field == "answers.ticket"


def test_the_checked_answers_are_stored_with_the_request(requests, clock):
    """The request keeps the answers as checked: text trimmed, blank optional ones left out."""
    request = file(requests, clock, {"ticket": " INC-9 ", "severity": "sev2", "hours": None})
    assert requests.get(BOB, request.id).answers == {"ticket": "INC-9", "severity": "sev2"}


def test_the_filing_audit_record_holds_the_answers(requests, session, clock):
    """request.created's `after` carries the answers."""
    request = file(requests, clock, {"ticket": "INC-9", "severity": "sev1"})
    record = session.scalar(
        select(AuditRecord).where(
            AuditRecord.object_id == request.id, AuditRecord.action == "request.created"
        )
    )
    assert record.after["answers"] == {"ticket": "INC-9", "severity": "sev1"}


def test_the_decision_log_input_holds_the_answers(requests, session, clock):
    """The decision-log entry's input has request.answers, so a replay decides on them."""
    request = file(requests, clock, {"ticket": "INC-9", "severity": "sev1", "hours": 3})
    logged = session.get(DecisionRecord, request.decision_id)
    assert logged.input["request"]["answers"] == {"ticket": "INC-9", "severity": "sev1", "hours": 3}
    assert logged.rule == "sev1-auto"


def test_the_question_service_lists_the_active_version_s_questions(requests):
    """QuestionService lists a package's questions in order; an unknown package is NotFound."""
    questions = QuestionService(requests.runtime)
    assert [q["id"] for q in questions.list("incident-access", "fr")] == [
        "ticket",
        "severity",
        "hours",
    ]
    with pytest.raises(NotFoundError):
        questions.list("nope")


def test_a_replay_decides_on_the_logged_answers(requests, session, clock):
    """Replaying the same rules flips nothing (the answers are replayed); rules that stop
    reading them flip the decision."""
    file(requests, clock, {"ticket": "INC-9", "severity": "sev1"})
    replay = ReplayService(session)
    same = load_texts({"incident-access.yaml": INCIDENT})
    report, changes = replay.run(same, package="incident-access")
    assert (report.examined, changes) == (1, [])
    stricter = INCIDENT.replace("{answers.severity: sev1}", "{answers.hours: {exists: true}}")
    report, changes = replay.run(load_texts({"i.yaml": stricter}), package="incident-access")
    assert [(c.before[1], c.after[1]) for c in changes] == [("sev1-auto", "ask-the-owners")]
