"""Fact derivation: only derived values, only the fields the bundle reads."""

from __future__ import annotations

from datetime import UTC, datetime

from policyd.domain import RequestOptions, Subject, UserType
from policyd.rules.compiler import MEMBER_LIMIT, compile_bundle, number_value
from policyd.rules.facts import build_fact
from policyd.rules.loader import load_texts
from tests.conftest import rule_file

# Two questions a package may declare, so that a condition can read their answers.
QUESTIONS = """
          questions:
            - {id: ticket, text: Ticket, type: text}
            - {id: hours, text: Hours, type: number}"""


def compiled_for(when: str, member_limit: int = MEMBER_LIMIT, *, questions: bool = False):
    text = rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: pkg
          displayName: P{QUESTIONS if questions else ""}
          rules:
            - id: r
              when: {when}
              then: {{decision: deny}}
        """
    )
    return compile_bundle(load_texts({"p.yaml": text}), member_limit=member_limit)


NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def test_domain_is_derived_lower_cased_from_the_email():
    """subject.domain is the lower-cased part after the last @."""
    compiled = compiled_for("{subject.domain: contoso.com, subject.email: {exists: true}}")
    fact = build_fact(compiled, Subject("u", email="Ann@Sub@Contoso.COM"), RequestOptions(), NOW)
    assert fact["subject__domain"] == "v:contoso.com"
    assert fact["subject__email"] == "v:ann@sub@contoso.com"


def test_only_read_fields_are_in_the_fact():
    """Fields no condition reads are left out of the fact."""
    compiled = compiled_for("{subject.type: guest}")
    subject = Subject("u", type=UserType.GUEST, department="Sales", groups=frozenset({"g"}))
    assert build_fact(compiled, subject, RequestOptions(), NOW) == {
        "pd": 1,
        "subject__type": "v:guest",
    }


def test_numbers_get_a_numeric_key_and_lists_a_sentinel():
    """Numeric attributes also appear as numbers; lists start with the empty sentinel."""
    compiled = compiled_for(
        "{subject.attributes.level: {gt: 1}, subject.attributes.name: x, subject.groups: g}",
        member_limit=0,
    )
    subject = Subject(
        "u", groups=frozenset({"b", "a"}), attributes={"level": "2.5", "name": "x", "n": 1}
    )
    fact = build_fact(compiled, subject, RequestOptions(), NOW)
    assert fact["subject__attributes__level"] == "v:2.5"
    assert fact["subject__attributes__level__n"] == number_value(2.5)
    assert "subject__attributes__name__n" not in fact
    assert "subject__attributes__n" not in fact
    assert fact["subject__groups"] == ["", "v:a", "v:b"]


def test_a_named_list_value_the_subject_holds_gets_its_own_key_and_no_list():
    """With few named values, the fact has a key per named value held, and no list."""
    compiled = compiled_for(
        "{any: [{subject.groups: a}, {subject.groups: {contains_any: [b, c]}}]}"
    )
    keys = compiled.members["subject.groups"]
    subject = Subject("u", groups=frozenset({"b", "a", "z", ""}))
    fact = build_fact(compiled, subject, RequestOptions(), NOW)
    assert fact == {"pd": 1, keys["a"]: 1, keys["b"]: 1}


def test_request_and_time_are_derived():
    """Requested duration is seconds; justification is a flag; windows are true/false."""
    compiled = compiled_for(
        "{request.duration: {gt: PT1H}, request.justification: {exists: true},"
        " now: {within: '* 9 * * *'}}"
    )
    fact = build_fact(compiled, Subject("u"), RequestOptions("PT2H", "because"), NOW)
    assert fact["request__duration__n"] == number_value(7200)
    assert fact["request__justification"] == "v:true"
    assert fact["now__w0"] == "v:true"
    later = build_fact(compiled, Subject("u"), RequestOptions(), NOW.replace(hour=10))
    assert "request__duration__n" not in later and "request__justification" not in later
    assert later["now__w0"] == "v:false"
