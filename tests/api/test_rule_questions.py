"""A rule's questions over HTTP: listed with whether they apply to the caller, required only
of requesters the rule applies to (422 naming them), and read by the rule."""

from __future__ import annotations

import pytest

from policyd.rules import load_bundle
from tests.conftest import POLICIES

DEALS = """\
apiVersion: policyd/v1
package:
  id: deal-room
  displayName: Deal room
  owners: ["user:carol"]
  lifetime: {duration: P7D}
  rules:
    - id: sales-with-a-deal
      when: {subject.department: Sales, answers.deal: {exists: true}}
      questions:
        - {id: deal, text: Which deal?, type: text, required: true}
      then: {decision: auto_approve, reason: sales staff work on a deal}
    - id: others-ask-the-owner
      when: {subject.department: {ne: Sales}}
      then:
        decision: require_approval
        approval: {stages: [{approvers: [owners]}]}
"""


@pytest.fixture
def deals(client, admin, people):
    files = {**load_bundle(POLICIES).files, "deal-room.yaml": DEALS}
    published = client.post("/v1/policy-versions", json={"files": files}, headers=admin)
    assert published.status_code == 201, published.json


def questions(client, headers, query: str = ""):
    return client.get(f"/v1/packages/deal-room/questions{query}", headers=headers)


def test_the_listing_says_whom_a_rule_s_question_applies_to(client, token, admin, deals):
    """sam (Sales) is asked for the deal, bob is not; an admin may ask about sam."""
    (deal,) = questions(client, token("sam")).json
    assert (deal["id"], deal["rule"], deal["required"], deal["applies"]) == (
        "deal",
        "sales-with-a-deal",
        True,
        True,
    )
    assert questions(client, token("bob")).json[0]["applies"] is False
    assert questions(client, admin, "?subject=sam").json[0]["applies"] is True
    assert questions(client, token("app1", "app")).json[0]["applies"] is None


def test_a_user_may_not_list_what_another_is_asked(client, token, deals):
    response = questions(client, token("bob"), "?subject=sam")
    assert response.status_code == 403
    assert list(response.json["errors"]) == ["subject"]


def test_an_unknown_subject_is_a_404_naming_it(client, admin, deals):
    response = questions(client, admin, "?subject=nobody")
    assert response.status_code == 404
    assert list(response.json["errors"]) == ["subject"]


def test_the_rule_s_required_question_unanswered_is_a_422_naming_it(client, token, deals):
    """sam must say which deal; bob files without answers."""
    body = {"package": "deal-room"}
    refused = client.post("/v1/requests", json=body, headers=token("sam"))
    assert refused.status_code == 422, refused.json
    assert list(refused.json["errors"]) == ["answers.deal"]
    assert client.post("/v1/requests", json=body, headers=token("bob")).status_code == 201


def test_the_answer_drives_the_rule_that_asks_it(client, token, deals):
    body = {"package": "deal-room", "answers": {"deal": "ACME-2027"}}
    filed = client.post("/v1/requests", json=body, headers=token("sam"))
    assert filed.status_code == 201, filed.json
    assert (filed.json["rule"], filed.json["answers"]) == (
        "sales-with-a-deal",
        {"deal": "ACME-2027"},
    )


def test_an_answer_to_a_question_not_asked_is_a_422(client, token, deals):
    body = {"package": "deal-room", "answers": {"deal": "ACME-2027"}}
    refused = client.post("/v1/requests", json=body, headers=token("bob"))
    assert refused.status_code == 422
    assert list(refused.json["errors"]) == ["answers.deal"]
