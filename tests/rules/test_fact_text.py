"""The fact writer writes exactly the JSON text of build_fact's dict."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from policyd.domain import RequestOptions, Subject, UserType
from policyd.rules.fact_text import FactWriter
from policyd.rules.facts import build_fact
from tests.rules.test_differential import CASES, MOMENTS
from tests.rules.test_facts import compiled_for

EVERY_FIELD = (
    "{all: [{subject.id: a}, {subject.email: {exists: true}}, {subject.domain: a.b},"
    " {subject.type: guest}, {subject.manager: m}, {subject.organization: o},"
    " {subject.department: d}, {subject.jobTitle: j}, {subject.employeeType: e},"
    " {subject.attributes.k: {ne: x}}, {subject.attributes.n: {gt: 1}},"
    " {subject.groups: {contains_any: [a, G.x, '1']}}, {subject.packages: {contains: pkg}},"
    " {answers.ticket: t}, {answers.hours: {ge: 2}}, {request.duration: {le: P1D}},"
    " {request.justification: {exists: true}}, {now: {within: '* 8-17 * * 1-5'}}]}"
)
COMPILED = [
    compiled_for(EVERY_FIELD, 64, questions=True),
    compiled_for(EVERY_FIELD, 0, questions=True),
]


@settings(max_examples=300, deadline=None)
@given(case=CASES, member_keys=st.booleans())
def test_the_writer_writes_build_fact_s_json(case, member_keys):
    """For every field a rule can read, the text equals json.dumps of build_fact's dict."""
    subject, request, now = case
    compiled = COMPILED[0 if member_keys else 1]
    expected = json.dumps(build_fact(compiled, subject, request, now))
    assert FactWriter(compiled).write(subject, request, now) == expected


def test_values_that_become_one_text_give_one_member_key():
    """1 and "1" in a subject's groups are one group, so its member key is written once."""
    compiled = COMPILED[0]
    subject = Subject("u", type=UserType.GUEST, groups=frozenset({1, "1", "zz"}))
    request = RequestOptions()
    text = FactWriter(compiled).write(subject, request, MOMENTS[0])
    assert text == json.dumps(build_fact(compiled, subject, request, MOMENTS[0]))
    assert len(json.loads(text)) == len(build_fact(compiled, subject, request, MOMENTS[0]))
