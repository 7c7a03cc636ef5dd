"""POST /v1/decisions by the WSGI hot path: the same answers as Flask's view, or Flask answers."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyd.api import create_app
from policyd.api.hotpath import DecisionHotPath
from policyd.store.models import DecisionRecord
from tests.api.test_versions import changed_files


@pytest.fixture
def flask_decisions(app) -> list[str]:
    """The POST /v1/decisions requests that reached Flask (the hot path passed them on)."""
    hot: DecisionHotPath = app.wsgi_app
    inner, seen = hot.wsgi_app, []

    def counting(environ, start_response):
        if environ["PATH_INFO"] == "/v1/decisions" and environ["REQUEST_METHOD"] == "POST":
            seen.append(environ["wsgi.input"].read().decode())
            environ["wsgi.input"].seek(0)
        return inner(environ, start_response)

    hot.wsgi_app = counting
    return seen


def post(client, headers, body, content_type="application/json"):
    data = json.dumps(body)
    return client.post("/v1/decisions", data=data, headers=headers, content_type=content_type)


def answer(response) -> tuple[int, str, dict]:
    """Status, content type and JSON body without the one field that differs: the new id."""
    body = dict(response.json)
    body.pop("decision_id", None)
    return response.status_code, response.content_type, body


def test_plain_decisions_skip_flask_and_are_logged(app, client, admin, people, flask_decisions):
    """With a token checked before (here by `people`), plain decisions skip Flask and are logged."""
    body = {"package": "scope-a-readers", "subject": {"id": "ada"}}
    answers = [post(client, admin, body) for _ in range(3)]
    assert flask_decisions == []
    for response in answers:
        assert response.status_code == 200
        assert response.content_type == "application/json"
        assert response.get_data(as_text=True).endswith("}\n")
        decision = response.json
        logged = client.get(f"/v1/decisions/{decision['decision_id']}", headers=admin).json
        assert logged["principal"] == "root" and logged["subject_id"] == "ada"
        with app.extensions["policyd.db"].session() as session:
            record = session.get(DecisionRecord, decision["decision_id"])
            assert {"decision_id": record.id, "subject_id": "ada", **record.result} == decision


TOKENS = ("admin", "app", "trusted", "ada", "bob", "auditor", "none", "unknown", "basic")
PACKAGES = st.sampled_from(["scope-a-readers", "sales-support", "merger-collaboration", "nope"])
SUBJECT_IDS = st.sampled_from(["ada", "bob", "sam", "fab", "ghost", ""])
OVERLAYS = st.fixed_dictionaries(
    {},
    optional={
        "groups": st.lists(st.sampled_from(["Group.ScopeA.Readers.Eligible", "x"]), max_size=2),
        "department": st.sampled_from(["Sales", "Engineering", None]),
        "type": st.sampled_from(["member", "guest", "robot"]),
        "attributes": st.sampled_from([{}, {"level": 3}, {"nested": [1]}]),
        "unknown": st.just(1),
    },
)
REQUESTS = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "duration": st.sampled_from(["PT1H", "P3D", "bogus", None]),
        "justification": st.sampled_from(["ticket 42", None, 7]),
    },
)
BODIES = st.one_of(
    st.builds(
        lambda package, subject_id, overlay, request: {
            "package": package,
            "subject": {"id": subject_id, **overlay},
            **({} if request is None else {"request": request}),
        },
        PACKAGES,
        SUBJECT_IDS,
        OVERLAYS,
        REQUESTS,
    ),
    st.sampled_from([{}, [], "text", {"package": "scope-a-readers"}, {"subject": {"id": "ada"}}]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES, who=st.sampled_from(TOKENS))
def test_the_hot_path_answers_exactly_as_flask(app, client, token, people, body, who):
    """For any body and caller, the answer with the hot path on equals Flask's alone."""
    headers = callers(app, token)[who]
    hot: DecisionHotPath = app.wsgi_app
    hot.enabled = False
    expected = post(client, headers, body)
    hot.enabled = True
    got = post(client, headers, body)
    assert answer(got) == answer(expected)


def callers(app, token) -> dict[str, dict[str, str]]:
    """One set of tokens per app, each already checked once (so cached)."""
    made = app.extensions.setdefault("test.callers", {})
    if not made:
        made.update(
            admin=token("root", "admin"),
            app=token("portal", "app"),
            trusted=token("trusted-app", "app"),
            ada=token("ada"),
            bob=token("bob"),
            auditor=token("aud", "auditor"),
            none={},
            unknown={"Authorization": "Bearer pd_unknown"},
            basic={"Authorization": "Basic cm9vdDpyb290"},
        )
        client = app.test_client()
        for headers in made.values():
            client.get("/v1/decisions", headers=headers)
    return made


def test_errors_are_answered_by_flask(client, admin, token, people, flask_decisions):
    """403, 404 and 422 come from Flask's handlers, with the body the hot path had read."""
    user = token("bob")
    post(client, user, {"package": "scope-a-readers", "subject": {"id": "bob"}})  # caches it
    flask_decisions.clear()
    forbidden = post(client, user, {"package": "scope-a-readers", "subject": {"id": "ada"}})
    missing = post(client, user, {"package": "nope", "subject": {"id": "bob"}})
    invalid = post(client, user, {"package": "scope-a-readers", "subject": {"id": "bob", "x": 1}})
    assert [forbidden.status_code, missing.status_code, invalid.status_code] == [403, 404, 422]
    assert "subject.id" in forbidden.json["errors"] and "package" in missing.json["errors"]
    assert "subject.x" in invalid.json["errors"]
    assert len(flask_decisions) == 3 and '"x": 1' in flask_decisions[2]


@pytest.mark.parametrize(
    "extra",
    [
        {"content_type": "text/plain"},
        {"headers": {"Transfer-Encoding": "chunked"}},
        {"content_type": "application/json; charset=utf-8"},
    ],
    ids=["not-json", "chunked", "charset"],
)
def test_unusual_requests_are_left_to_flask_or_read_alike(client, admin, people, extra):
    """Other content types and chunked bodies go to Flask; a charset parameter reads alike."""
    extra = dict(extra)
    headers = {**admin, **extra.pop("headers", {})}
    body = {"package": "scope-a-readers", "subject": {"id": "ada"}}
    post(client, admin, body)
    hot = client.application.wsgi_app
    hot.enabled = False
    expected = answer(post(client, headers, body, **extra))
    hot.enabled = True
    assert answer(post(client, headers, body, **extra)) == expected


def test_a_directory_write_is_seen_by_the_next_decision(client, admin, people, flask_decisions):
    """Adding bob to the eligible group changes his next decision, answered by the hot path."""
    body = {"package": "scope-a-readers", "subject": {"id": "bob"}}
    assert post(client, admin, body).json["decision"] == "require_approval"
    assert post(client, admin, body).json["decision"] == "require_approval"  # cached subject
    group = "/v1/groups/Group.ScopeA.Readers.Eligible/members/bob"
    assert client.put(group, headers=admin).status_code == 204
    flask_decisions.clear()
    assert post(client, admin, body).json["decision"] == "auto_approve"
    assert flask_decisions == []


def test_a_new_version_is_picked_up_within_the_sync_interval(client, admin, database_url, clock):
    """Another process answering by its hot path switches versions when its interval is over."""
    other = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": "",
            "POLICYD_CLOCK": clock,
            "POLICYD_SYNC_INTERVAL": 60,
        }
    )
    body = {"package": "scope-a-readers", "subject": {"id": "someone"}}  # an admin's subject
    try:
        other_client = other.test_client()
        before = post(other_client, admin, body).json
        published = client.post(
            "/v1/policy-versions", json={"files": changed_files()}, headers=admin
        ).json["id"]
        assert post(other_client, admin, body).json["version"] == before["version"]  # not yet
        other.extensions["policyd.sync"]._checked -= 60  # the interval is over
        # That request starts building the new version and is answered by a whole one.
        assert post(other_client, admin, body).json["version"] in (before["version"], published)
        other.extensions["policyd.sync"].join()
        assert post(other_client, admin, body).json["version"] == published
        assert post(other_client, admin, body).json["version"] == published
    finally:
        other.extensions["policyd.decision_log"].close()
        other.extensions["policyd.runtime"].close()
        other.extensions["policyd.db"].dispose()


def test_hot_path_decisions_are_counted_in_the_metrics(client, admin, people, flask_decisions):
    """Decisions the hot path answers count by outcome and in the latency histogram."""
    body = {"package": "scope-a-readers", "subject": {"id": "ada"}}
    for _ in range(3):
        post(client, admin, body)
    assert flask_decisions == []
    text = client.get("/metrics").get_data(as_text=True)
    assert 'policyd_decisions_total{outcome="auto_approve"} 3.0' in text
    assert 'policyd_request_seconds_count{endpoint="decisions.Decisions",method="POST"} 3.0' in text


def test_the_hot_path_can_be_turned_off(database_url, clock):
    """POLICYD_DECISION_HOTPATH=off leaves every decision to Flask."""
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": "",
            "POLICYD_CLOCK": clock,
            "POLICYD_DECISION_HOTPATH": "off",
        }
    )
    try:
        assert app.wsgi_app.enabled is False
    finally:
        app.extensions["policyd.decision_log"].close()
        app.extensions["policyd.runtime"].close()
        app.extensions["policyd.db"].dispose()
