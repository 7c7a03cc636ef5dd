"""api/parser.py: SchemaLoader loads as its schema's own `load`, results and messages alike."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, pre_load

from policyd.api.decisions import DECISION_IN
from policyd.api.parser import SchemaLoader

LOAD = SchemaLoader(DECISION_IN)


def outcome(load, body):
    """("ok", result) or ("error", messages) of one load."""
    try:
        return "ok", load(body)
    except ValidationError as err:
        return "error", err.messages


TEXT = st.one_of(st.text(max_size=6), st.just("\x00"), st.just("x" * 300), st.just(""))
SCALAR = st.one_of(
    TEXT, st.booleans(), st.integers(), st.floats(), st.none(), st.just(math.inf), st.just(10**400)
)
VALUE = st.one_of(SCALAR, st.lists(SCALAR, max_size=3), st.dictionaries(TEXT, SCALAR, max_size=3))
SUBJECT = st.one_of(
    VALUE,
    st.fixed_dictionaries(
        {"id": st.one_of(TEXT, VALUE)},
        optional={
            "type": st.one_of(st.sampled_from(["member", "guest", "robot"]), VALUE),
            "groups": st.one_of(st.lists(TEXT, max_size=3), VALUE),
            "attributes": st.one_of(st.dictionaries(TEXT, SCALAR, max_size=3), VALUE),
            "jobTitle": st.one_of(TEXT, st.none()),
            "email": st.one_of(TEXT, st.none()),
            "colour": VALUE,
        },
    ),
)
REQUEST = st.one_of(
    st.none(),
    VALUE,
    st.fixed_dictionaries(
        {},
        optional={
            "duration": st.one_of(st.sampled_from(["PT8H", "P90D", "P01D", "P99999Y"]), VALUE),
            "justification": st.one_of(TEXT, st.none()),
            "why": VALUE,
        },
    ),
)
BODY = st.one_of(
    VALUE,
    st.fixed_dictionaries(
        {},
        optional={"package": st.one_of(TEXT, VALUE), "subject": SUBJECT, "request": REQUEST},
    ),
)


@settings(max_examples=300, deadline=None)
@given(BODY)
def test_the_decision_loader_answers_as_the_schemas_load(body):
    """Any body, valid or not: the same result, or the same messages by field."""
    assert outcome(LOAD, body) == outcome(DECISION_IN.load, body)


def test_a_plain_decision_body_loads_to_the_subject_and_request():
    body = {"package": "p", "subject": {"id": "ada", "groups": ["g"]}, "request": {}}
    data = LOAD(body)
    assert data["package"] == "p" and data["subject"].groups == frozenset({"g"})
    assert data["request"].duration is None


def test_a_schema_with_hooks_it_does_not_precompute_is_loaded_by_its_own_load():
    """A pre_load hook (one thing the loader does not precompute): `load` runs it."""

    class Trimmed(Schema):
        name = fields.String(required=True)

        @pre_load
        def trim(self, data, **kwargs):
            name = data.get("name")
            return {**data, "name": name.strip()} if isinstance(name, str) else data

    loader = SchemaLoader(Trimmed())
    assert not loader.plain
    assert loader({"name": " ada "}) == {"name": "ada"}
    with pytest.raises(ValidationError):
        loader({"name": 1})
