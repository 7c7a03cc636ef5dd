"""Questions a rule declares: asked only of requesters the rule applies to, required then,
read by that rule's condition."""

from __future__ import annotations

import pytest

from policyd.domain import Outcome, RequestOptions, Subject
from policyd.rules import InvalidInputError, ProblemsError, load_texts
from policyd.rules.condition import Cmp, Not
from policyd.rules.packed import pack_bundle, unpack_bundle
from policyd.rules.rule_question import applies_without_answers
from tests.conftest import policy_from, rule_file

CONTRACTORS = """\
apiVersion: policyd/v1
package:
  id: crm
  displayName: CRM
  lifetime: {duration: P7D}
  questions:
    - {id: purpose, text: Why do you need it?, type: text}
  rules:
    - id: contractors-with-sponsor
      when:
        subject.employeeType: contractor
        answers.sponsor_ticket: {exists: true}
      questions:
        - id: sponsor_ticket
          text: {en: Sponsor's ticket, fr: Ticket du parrain}
          type: text
          required: true
      then: {decision: auto_approve, reason: a sponsor vouches for the contractor}
    - id: employees
      when: {subject.employeeType: {ne: contractor}}
      then: {decision: auto_approve}
"""
CONTRACTOR = Subject(id="cora", employee_type="contractor")
EMPLOYEE = Subject(id="emma", employee_type="employee")


@pytest.fixture
def decide(clock):
    policy = policy_from(CONTRACTORS)

    def run(subject: Subject, **answers):
        return policy.decide("crm", subject, RequestOptions(answers=answers), now=clock())

    yield run
    policy.close()


def test_a_rule_s_required_question_is_asked_of_those_it_applies_to(decide):
    """A contractor without the sponsor's ticket: the error names answers.sponsor_ticket."""
    with pytest.raises(InvalidInputError) as refused:
        decide(CONTRACTOR, purpose="audit")
    assert refused.value.field == "answers.sponsor_ticket"


def test_the_answer_is_read_by_the_rule_that_asks_it(decide):
    decided = decide(CONTRACTOR, sponsor_ticket="SP-9")
    assert (decided.outcome, decided.rule) == (Outcome.AUTO_APPROVE, "contractors-with-sponsor")


def test_a_rule_that_does_not_apply_asks_nothing(decide):
    """An employee is not asked for a sponsor's ticket, and may not answer it."""
    assert decide(EMPLOYEE).rule == "employees"
    with pytest.raises(InvalidInputError) as refused:
        decide(EMPLOYEE, sponsor_ticket="SP-9")
    assert refused.value.field == "answers.sponsor_ticket"
    assert "does not apply" in refused.value.message


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (Cmp("answers.x", "eq", "a"), True),
        (Not(Cmp("answers.x", "eq", "a")), True),
        (Cmp("subject.department", "eq", "Sales"), Cmp("subject.department", "eq", "Sales")),
        (
            Not(Cmp("subject.department", "eq", "Sales")),
            Not(Cmp("subject.department", "eq", "Sales")),
        ),
    ],
)
def test_a_rule_applies_when_some_answers_could_make_it_match(when, expected):
    """Answers are unknown when deciding what to ask: any comparison on them could hold."""
    assert applies_without_answers(when) == expected


def test_rule_questions_survive_the_packed_form():
    bundle = load_texts({"crm.yaml": CONTRACTORS})
    unpacked = unpack_bundle(pack_bundle(bundle))
    assert unpacked.packages["crm"] == bundle.packages["crm"]
    assert unpacked.packages["crm"].rules[0].questions[0].id == "sponsor_ticket"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load_texts({"crm.yaml": rule_file(text)})
    return [str(p) for p in caught.value.problems]


def test_a_rule_may_not_read_another_rule_s_question():
    """Only the package's questions and the rule's own are read by a rule's condition."""
    text = CONTRACTORS.replace(
        "      when: {subject.employeeType: {ne: contractor}}\n",
        "      when: {answers.sponsor_ticket: {exists: false}}\n",
    )
    assert problems_of(text) == [
        "crm.yaml:20: package.rules[1].when: answers.sponsor_ticket: the package declares no "
        "question 'sponsor_ticket'"
    ]


def test_a_question_id_repeated_in_a_rule_is_an_error():
    text = CONTRACTORS.replace("id: sponsor_ticket\n", "id: purpose\n").replace(
        "answers.sponsor_ticket", "answers.purpose"
    )
    (found,) = problems_of(text)
    assert "question id(s) purpose repeat, counting the rules' questions" in found
