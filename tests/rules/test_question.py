"""Requestor questions: declared in rule files, answers checked and read by rule conditions."""

from __future__ import annotations

import pytest

from policyd.domain import Outcome, RequestOptions, Subject
from policyd.rules import InvalidInputError, ProblemsError, load_texts
from policyd.rules.model import QuestionType
from policyd.rules.question import AnswerError, check_answers, question_view
from tests.conftest import policy_from, rule_file

QUESTIONS = """\
apiVersion: policyd/v1
package:
  id: pkg
  displayName: Package
  lifetime: {duration: P1D}
  questions:
    - id: ticket
      text: {en: Ticket number, fr: Numéro de ticket}
      type: text
      required: true
    - id: team
      text: Which team?
      type: choice
      options: [payments, risk]
    - id: hours
      text: Hours a week
      type: number
      min: 1
      max: 40
    - id: start
      text: Start date
      type: date
  rules:
    - id: payments-with-ticket
      when: {answers.team: payments, answers.ticket: {exists: true}}
      then: {decision: auto_approve}
    - id: long-hours
      when: {answers.hours: {gt: 20}}
      then: {decision: deny, reason: too many hours}
    - id: others
      then:
        decision: require_approval
        approval: {stages: [{approvers: ["user:olivia"]}]}
"""
SUBJECT = Subject(id="alice")


def load(text: str = QUESTIONS):
    return load_texts({"pkg.yaml": rule_file(text)})


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load(text)
    return [str(p) for p in caught.value.problems]


@pytest.fixture
def decide(clock):
    policy = policy_from(QUESTIONS)

    def run(**answers):
        return policy.decide("pkg", SUBJECT, RequestOptions(answers=answers), now=clock())

    yield run
    policy.close()


def test_questions_load_in_order_with_their_types():
    """A package's questions load with id, type, texts and bounds, in file order."""
    package = load().package("pkg")
    assert [q.id for q in package.questions] == ["ticket", "team", "hours", "start"]
    assert [q.type for q in package.questions] == list(QuestionType)
    assert package.question("ticket").required
    assert package.question("team").options == ("payments", "risk")
    assert (package.question("hours").minimum, package.question("hours").maximum) == (1, 40)


def test_localised_text_is_picked_by_language_with_a_fallback():
    """A localised question answers in the asked language, its primary subtag, or the first."""
    ticket = load().package("pkg").question("ticket")
    assert ticket.text_for("fr-CA") == "Numéro de ticket"
    assert ticket.text_for("de") == "Ticket number"
    assert question_view(ticket, "fr")["text"] == "Numéro de ticket"
    assert question_view(ticket)["texts"] == {"en": "Ticket number", "fr": "Numéro de ticket"}


def test_a_choice_without_options_is_an_error_at_its_line():
    """A choice question needs options; the error names file and line."""
    text = QUESTIONS.replace("      options: [payments, risk]\n", "")
    assert problems_of(text) == [
        "pkg.yaml:11: package.questions[1].options: a choice question needs options"
    ]


def test_min_above_max_is_an_error_at_its_line():
    """A number question whose min is above its max is refused."""
    text = QUESTIONS.replace("min: 1", "min: 50")
    assert problems_of(text) == ["pkg.yaml:19: package.questions[2].max: min is greater than max"]


def test_bounds_on_a_text_question_are_an_error():
    """Only number questions take min and max."""
    text = QUESTIONS.replace("      type: text\n", "      type: text\n      max: 3\n")
    assert problems_of(text) == [
        "pkg.yaml:10: package.questions[0].max: only a number question takes max"
    ]


def test_a_question_id_must_be_a_fact_friendly_slug():
    """Question ids are lower-case letters, digits and '_' (they become fact keys)."""
    text = QUESTIONS.replace("id: ticket", "id: Ticket-No")
    (problem,) = problems_of(text)
    assert problem.startswith("pkg.yaml:7: package.questions[0].id: 'Ticket-No' is not a valid")


def test_repeated_question_ids_are_an_error():
    """Two questions of one package cannot share an id."""
    text = QUESTIONS.replace("id: team", "id: ticket").replace("answers.team: payments, ", "")
    (problem,) = problems_of(text)
    assert problem.startswith("pkg.yaml:6: package.questions: question id(s) ticket repeat")


def test_a_rule_reading_an_undeclared_answer_is_an_error_at_its_line():
    """`answers.<id>` in a condition must name one of the package's questions."""
    text = QUESTIONS.replace("answers.hours", "answers.hour")
    (problem,) = problems_of(text)
    assert problem == (
        "pkg.yaml:28: package.rules[1].when: answers.hour: the package declares no question 'hour'"
    )


def test_unknown_question_type_is_an_error():
    """A question's type is text, choice, number or date."""
    (problem,) = problems_of(QUESTIONS.replace("type: date", "type: colour"))
    assert problem.startswith("pkg.yaml:22: package.questions[3].type:")


def test_a_missing_required_answer_names_it(decide):
    """A required question left unanswered is refused, naming answers.<id>."""
    with pytest.raises(InvalidInputError) as caught:
        decide(team="payments")
    assert caught.value.field == "answers.ticket"


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({"team": "legal"}, "answers.team"),
        ({"hours": 0}, "answers.hours"),
        ({"hours": 41}, "answers.hours"),
        ({"hours": "ten"}, "answers.hours"),
        ({"hours": True}, "answers.hours"),
        ({"start": "31/12/2026"}, "answers.start"),
        ({"start": 20261231}, "answers.start"),
        ({"ticket": 42}, "answers.ticket"),
        ({"colour": "red"}, "answers.colour"),
    ],
)
def test_an_unfitting_or_unknown_answer_names_it(decide, answers, field):
    """A wrong type, choice, out-of-range number, bad date or unknown id names the answer."""
    with pytest.raises(InvalidInputError) as caught:
        decide(**{"ticket": "T-1", **answers})
    assert caught.value.field == field


def test_an_answer_drives_auto_approval(decide):
    """The rule on answers.team and answers.ticket auto-approves."""
    decision = decide(ticket="INC-42", team="payments")
    assert (decision.outcome, decision.rule) == (Outcome.AUTO_APPROVE, "payments-with-ticket")


def test_a_number_answer_is_compared_as_a_number(decide):
    """answers.hours > 20 holds for 21 and not for 9."""
    assert decide(ticket="T", hours=21).outcome is Outcome.DENY
    assert decide(ticket="T", hours=9).rule == "others"


def test_other_answers_need_approval(decide):
    """Without the payments answer the catch-all rule asks for approval."""
    assert decide(ticket="T", team="risk").outcome is Outcome.REQUIRE_APPROVAL


def test_answers_are_normalised():
    """Text is trimmed, blank optional text counts as no answer, dates take ISO form."""
    package = load().package("pkg")
    checked = check_answers(package, {"ticket": " T-1 ", "start": "2026-12-31", "team": None})
    assert checked == {"ticket": "T-1", "start": "2026-12-31"}
    with pytest.raises(AnswerError):
        check_answers(package, {"ticket": "   "})


def test_a_package_without_questions_takes_no_answers():
    """Answers to a package that asks nothing are unknown ids."""
    package = load_texts({"p.yaml": rule_file(QUESTIONS.split("  questions:")[0] + RULE)})
    with pytest.raises(AnswerError) as caught:
        check_answers(package.package("pkg"), {"ticket": "T"})
    assert caught.value.field == "answers.ticket"


RULE = """\
  rules:
    - id: all
      then: {decision: auto_approve}
"""
