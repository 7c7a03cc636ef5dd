"""Requestor questions over HTTP: answers checked (422 naming them), stored, shown, logged."""

from __future__ import annotations

import json
import re

import pytest

from policyd.rules import load_bundle
from tests.conftest import POLICIES, ROOT

JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)

INCIDENT = """\
apiVersion: policyd/v1
package:
  id: incident-access
  displayName: Incident access
  owners: ["user:carol"]
  lifetime: {duration: PT8H, max: P1D, extendable: true}
  questions:
    - id: ticket
      text: {en: Incident ticket, fr: Ticket d'incident}
      type: text
      required: true
    - id: severity
      text: Severity
      type: choice
      options: [sev1, sev2, sev3]
      required: true
    - id: hours
      text: Hours needed
      type: number
      min: 1
      max: 24
  rules:
    - id: sev1-auto
      when: {answers.severity: sev1}
      then: {decision: auto_approve, reason: a sev1 incident is open}
    - id: ask-the-owners
      then:
        decision: require_approval
        approval: {stages: [{approvers: [owners]}]}
"""
SEV2 = {"ticket": "INC-7", "severity": "sev2", "hours": 4}


@pytest.fixture
def incident(client, admin, people):
    """The example policies plus a package that asks questions, published and active."""
    files = {**load_bundle(POLICIES).files, "incident-access.yaml": INCIDENT}
    published = client.post("/v1/policy-versions", json={"files": files}, headers=admin)
    assert published.status_code == 201, published.json


def file(client, headers, answers):
    body = {"package": "incident-access", "answers": answers}
    return client.post("/v1/requests", json=body, headers=headers)


def test_a_required_question_unanswered_is_a_422_naming_it(client, token, incident):
    """Leaving out the required ticket gets 422 with `answers.ticket` in the errors."""
    response = file(client, token("bob"), {"severity": "sev1"})
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == ["answers.ticket"]


def test_no_answers_at_all_names_the_first_required_question(client, token, incident):
    """A request without `answers` is refused like one with a required answer missing."""
    response = client.post(
        "/v1/requests", json={"package": "incident-access"}, headers=token("bob")
    )
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["answers.ticket"]


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({**SEV2, "severity": "sev9"}, "answers.severity"),
        ({**SEV2, "hours": 25}, "answers.hours"),
        ({**SEV2, "hours": "four"}, "answers.hours"),
        ({**SEV2, "colour": "red"}, "answers.colour"),
    ],
)
def test_an_unfitting_or_unknown_answer_is_a_422_naming_it(client, token, incident, answers, field):
    """A wrong choice, an out-of-range or non-numeric number, an unknown id: 422 naming it."""
    response = file(client, token("bob"), answers)
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == [field]


def test_an_answer_that_is_not_a_scalar_is_a_422_naming_it(client, token, incident):
    """A list as an answer is refused by the body's schema, naming the answer."""
    response = file(client, token("bob"), {**SEV2, "ticket": ["INC-7"]})
    assert response.status_code == 422
    assert any(name.startswith("answers.ticket") for name in response.json["errors"])


def test_a_sev1_answer_drives_auto_approval(client, token, incident):
    """answers.severity = sev1 matches the auto-approve rule; the request shows its answers."""
    response = file(client, token("bob"), {"ticket": "INC-1", "severity": "sev1"})
    assert response.status_code == 201, response.json
    assert (response.json["rule"], response.json["state"]) == ("sev1-auto", "delivered")
    assert response.json["answers"] == {"ticket": "INC-1", "severity": "sev1"}


def test_the_approver_sees_the_answers(client, token, incident):
    """The package owner finds the request in their inbox with the requester's answers."""
    filed = file(client, token("bob"), {**SEV2, "ticket": "  INC-7 "}).json
    assert filed["state"] == "pending_approval"
    inbox = client.get("/v1/requests?approver=me", headers=token("carol")).json
    assert [(r["id"], r["answers"]) for r in inbox] == [(filed["id"], SEV2)]
    one = client.get(f"/v1/requests/{filed['id']}", headers=token("carol")).json
    assert one["answers"] == SEV2


def test_the_decision_log_and_the_audit_keep_the_answers(client, token, admin, incident):
    """The decision-log entry's input and the request.created audit record hold the answers."""
    filed = file(client, token("bob"), SEV2).json
    logged = client.get(f"/v1/decisions/{filed['decision_id']}", headers=admin).json
    assert logged["input"]["request"]["answers"] == SEV2
    audit = client.get(
        f"/v1/audit?object_id={filed['id']}&action=request.created", headers=admin
    ).json
    assert [record["after"]["answers"] for record in audit] == [SEV2]


def test_a_decision_preview_takes_answers(client, token, incident):
    """POST /v1/decisions with request.answers decides on them."""
    body = {"package": "incident-access", "subject": {"id": "bob"}}
    body["request"] = {"answers": {"ticket": "INC-1", "severity": "sev1"}}
    decided = client.post("/v1/decisions", json=body, headers=token("app1", "app"))
    assert decided.json["rule"] == "sev1-auto"


def test_a_decision_preview_checks_the_answers_it_is_given(client, token, incident):
    """Answers given to a preview are checked in full: a required one missing is a 422."""
    body = {"package": "incident-access", "subject": {"id": "bob"}}
    body["request"] = {"answers": {"severity": "sev1"}}
    missing = client.post("/v1/decisions", json=body, headers=token("app1", "app"))
    assert missing.status_code == 422
    assert list(missing.json["errors"]) == ["answers.ticket"]


def test_a_decision_preview_without_answers_decides_as_if_none_were_given(client, token, incident):
    """Without `answers` a preview demands none; rules on answers do not match."""
    body = {"package": "incident-access", "subject": {"id": "bob"}}
    decided = client.post("/v1/decisions", json=body, headers=token("app1", "app"))
    assert (decided.status_code, decided.json["rule"]) == (200, "ask-the-owners")


def test_an_extension_keeps_the_first_answers(client, token, incident):
    """Extending access decided on answers is decided on the same answers again."""
    bob = token("bob")
    filed = file(client, bob, {"ticket": "INC-1", "severity": "sev1"}).json
    (assignment,) = client.get("/v1/assignments", headers=bob).json
    extended = client.post(f"/v1/assignments/{assignment['id']}/extend", json={}, headers=bob)
    assert extended.status_code in (200, 201), extended.json
    assert extended.json["answers"] == filed["answers"]


def test_the_documented_exchange_holds(client, token, incident):
    """The 422 example of docs/api.md is what the service answers to its request."""
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = text.split("## Questions and answers\n", 1)[1].split("\n## ", 1)[0]
    sent, answered = (json.loads(block) for block in JSON_BLOCK.findall(section)[:2])
    response = client.post("/v1/requests", json=sent, headers=token("bob"))
    assert (response.status_code, response.json) == (422, answered)


def test_a_requester_reads_the_questions_in_their_language(client, token, incident):
    """GET /v1/packages/{id}/questions lists them in order, text in `lang` when written."""
    response = client.get("/v1/packages/incident-access/questions?lang=fr", headers=token("bob"))
    assert response.status_code == 200, response.json
    ticket, severity, hours = response.json
    assert (ticket["id"], ticket["text"], ticket["required"]) == (
        "ticket",
        "Ticket d'incident",
        True,
    )
    assert ticket["texts"] == {"en": "Incident ticket", "fr": "Ticket d'incident"}
    assert (severity["type"], severity["options"]) == ("choice", ["sev1", "sev2", "sev3"])
    assert (hours["min"], hours["max"], hours["text"]) == (1, 24, "Hours needed")


def test_questions_of_an_unknown_package_are_a_404_naming_it(client, token, incident):
    """An unknown package id is a 404 naming `package`."""
    response = client.get("/v1/packages/nope/questions", headers=token("bob"))
    assert response.status_code == 404
    assert list(response.json["errors"]) == ["package"]


def test_a_package_without_questions_lists_none(client, token, incident):
    """A package that asks nothing answers an empty list."""
    response = client.get("/v1/packages/scope-a-readers/questions", headers=token("bob"))
    assert (response.status_code, response.json) == (200, [])
