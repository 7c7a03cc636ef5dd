"""The decision-body shortcut: the schema's own result, or no answer at all."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from policyd.api.decisions import blp
from policyd.api.parser import decision_body
from policyd.api.schemas import DecisionInSchema

SCHEMA = DecisionInSchema()
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3)
anything = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(), inner)
)
names = st.text(min_size=1, max_size=4)
optional_text = st.none() | st.text(max_size=4)
valid_subject_fields = {
    "email": optional_text,
    "type": st.sampled_from(["member", "guest"]),
    "groups": st.lists(names, max_size=3),
    "packages": st.lists(names, max_size=3),
    "manager": optional_text,
    "organization": optional_text,
    "department": optional_text,
    "jobTitle": optional_text,
    "employeeType": optional_text,
    "attributes": st.dictionaries(st.text(max_size=3), scalars, max_size=3),
}
valid_subjects = st.fixed_dictionaries({"id": names}, optional=valid_subject_fields)
valid_requests = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "duration": st.none() | st.sampled_from(["PT4H", "P1D", "PT30M", "P2W"]),
        "justification": optional_text,
    },
)
valid_bodies = st.fixed_dictionaries(
    {"package": names, "subject": valid_subjects}, optional={"request": valid_requests}
)


@st.composite
def spoiled(draw, bodies):
    """A valid body with one value replaced by anything, or one key added or removed."""
    body = draw(bodies)
    where = draw(st.sampled_from(["body", "subject", "request"]))
    target = body if where == "body" else body.get(where)
    if not isinstance(target, dict):
        body[where] = draw(anything)
        return body
    key = draw(st.sampled_from([*sorted(target), "id", "x", "job_title", "duration"]))
    if key in target and draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(anything | st.sampled_from(["", "4 hours", "admin", [""], [1]]))
    return body


bodies = valid_bodies | spoiled(valid_bodies) | anything


@settings(max_examples=1500, deadline=None)
@given(bodies)
def test_the_shortcut_agrees_with_the_schema(body):
    """For every body: the schema's exact result, or None where the schema must judge."""
    fast = decision_body(body)
    try:
        slow = SCHEMA.load(body)
    except ValidationError:
        assert fast is None
    else:
        assert fast is None or fast == slow


def test_the_shortcut_takes_plain_bodies():
    """The bodies apps send every day never need marshmallow."""
    body = {
        "package": "p",
        "subject": {"id": "ada", "type": "guest", "groups": ["g"], "attributes": {"a": 1}},
        "request": {"duration": "PT4H", "justification": "on call"},
    }
    assert decision_body(body) == SCHEMA.load(body)
    assert decision_body({"package": "p", "subject": {"id": "ada"}}) == SCHEMA.load(
        {"package": "p", "subject": {"id": "ada"}}
    )


INVALID = [
    {"subject": {"id": "ada"}},
    {"package": "", "subject": {"id": "ada"}},
    {"package": "p", "subject": {"id": "ada", "groups": [""]}},
    {"package": "p", "subject": {"id": "ada"}, "request": {"duration": "4 hours"}},
    {"package": "p", "subject": {"id": "ada", "colour": "blue"}},
    {"package": "p", "subject": {"id": "ada"}, "extra": 1},
    {"package": 1, "subject": "ada"},
]


@pytest.mark.parametrize("body", INVALID)
def test_errors_read_as_without_the_shortcut(client, admin, body, monkeypatch):
    """Every 422 is word for word the one marshmallow gives on its own."""
    with_shortcut = client.post("/v1/decisions", json=body, headers=admin)
    monkeypatch.setattr(blp.ARGUMENTS_PARSER, "shortcuts", {})
    without = client.post("/v1/decisions", json=body, headers=admin)
    assert with_shortcut.status_code == without.status_code == 422
    assert with_shortcut.json == without.json


def test_the_openapi_document_still_names_the_schema(client):
    """The request body is documented by DecisionIn, as before the shortcut."""
    spec = client.get("/openapi.json").json
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/DecisionIn"}
    assert set(spec["components"]["schemas"]["DecisionIn"]["properties"]) == {
        "package",
        "subject",
        "request",
    }
