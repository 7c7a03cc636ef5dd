"""The one request pipeline: request ids, error shapes, hooks and metrics alike on every route."""

from __future__ import annotations

import io
import json
import logging

import pytest
from flask import Response, request

from policyd import logs
from policyd.api import create_app, decisions
from policyd.api.context import components
from policyd.api.pipeline import RequestPipeline, after_response
from policyd.services.actor import SYSTEM
from policyd.services.tokens import TokenService

DECISION = {"package": "scope-a-readers", "subject": {"id": "ada"}}


def test_a_callers_request_id_is_returned(client, admin):
    """A plain X-Request-ID sent by the caller comes back unchanged."""
    response = client.get("/v1/policy-versions", headers={**admin, "X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("sent", [None, "x" * 129, "two words", 'quote"d', "semi;colon"])
def test_a_missing_or_unusable_request_id_is_replaced_by_one_of_ours(client, admin, sent):
    """Without a usable X-Request-ID the answer carries a fresh 32-hex-digit id."""
    headers = dict(admin)
    if sent is not None:
        headers["X-Request-ID"] = sent
    response = client.get("/v1/policy-versions", headers=headers)
    rid = response.headers["X-Request-ID"]
    assert rid != headers.get("X-Request-ID")
    assert len(rid) == 32 and int(rid, 16) >= 0


def test_errors_carry_the_request_id_too(client):
    """A refused call (401) and an unknown route (404) answer with the id as well."""
    for path in ("/v1/policy-versions", "/v1/no-such-thing"):
        response = client.get(path, headers={"X-Request-ID": "trace-1"})
        assert response.status_code in (401, 404)
        assert response.headers["X-Request-ID"] == "trace-1"


def test_decisions_carry_the_request_id_as_every_route_does(client, admin, people):
    """POST /v1/decisions returns the caller's X-Request-ID on a 200, a 401 and a 422, as a
    GET of another route does."""
    calls = [
        client.get("/v1/policy-versions", headers={**admin, "X-Request-ID": "same-1"}),
        client.post("/v1/decisions", json=DECISION, headers={**admin, "X-Request-ID": "same-1"}),
        client.post("/v1/decisions", json=DECISION, headers={"X-Request-ID": "same-1"}),
        client.post(
            "/v1/decisions", json={"package": "p"}, headers={**admin, "X-Request-ID": "same-1"}
        ),
    ]
    assert [c.status_code for c in calls] == [200, 200, 401, 422]
    assert {c.headers["X-Request-ID"] for c in calls} == {"same-1"}


def test_a_decisions_missing_request_id_is_made_as_for_every_route(client, admin, people):
    """Without an X-Request-ID a decision's answer carries a fresh 32-hex-digit id."""
    response = client.post("/v1/decisions", json=DECISION, headers=admin)
    rid = response.headers["X-Request-ID"]
    assert response.status_code == 200 and len(rid) == 32 and int(rid, 16) >= 0


def error(response) -> tuple[int, dict]:
    return response.status_code, response.json


@pytest.mark.parametrize(
    "send",
    [
        {"data": b"{not json", "content_type": "application/json"},
        {"data": b"[" * 40 + b"]" * 40, "content_type": "application/json"},
        {"data": b"{}", "content_type": "application/json", "headers": {"X-Anon": "1"}},
    ],
    ids=["not-json", "too-deep", "no-token"],
)
def test_decisions_refuse_bad_input_in_the_error_shape_of_every_route(client, admin, send):
    """A body that is not JSON, one nested too deeply and a call without a token get the same
    status and JSON error body on POST /v1/decisions as on POST /v1/requests."""
    send = dict(send)
    headers = {} if send.pop("headers", None) else admin
    decisions = client.post("/v1/decisions", headers=headers, **send)
    requests = client.post("/v1/requests", headers=headers, **send)
    assert error(decisions) == error(requests)
    assert decisions.status_code in (400, 401)
    assert set(decisions.json) >= {"code", "status", "message"}


def test_decisions_name_the_invalid_field_as_every_route_does(client, admin, people):
    """An unknown subject field is a 422 naming `subject.colour`, as on POST /v1/requests."""
    body = {"package": "scope-a-readers", "subject": {"id": "ada", "colour": "blue"}}
    decisions = client.post("/v1/decisions", json=body, headers=admin)
    requests = client.post("/v1/requests", json=body, headers=admin)
    assert decisions.status_code == requests.status_code == 422
    assert decisions.json["errors"]["subject.colour"] == requests.json["errors"]["subject.colour"]
    assert decisions.json["status"] == "Unprocessable Entity"


def test_the_body_limit_applies_to_decisions_as_to_every_route(database_url, clock):
    """POLICYD_MAX_BODY_BYTES answers 413 naming `body` on POST /v1/decisions too."""
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": "",
            "POLICYD_CLOCK": clock,
            "POLICYD_AUTO_UPGRADE": True,
            "POLICYD_MAX_BODY_BYTES": 64,
        }
    )
    try:
        with components(app).database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=clock())
        client, headers = app.test_client(), {"Authorization": f"Bearer {plain}"}
        big = {"package": "p", "subject": {"id": "x" * 100}}
        paths = ("/v1/decisions", "/v1/requests")
        answers = [client.post(path, json=big, headers=headers) for path in paths]
    finally:
        components(app).decision_log.close()
        components(app).runtime.close()
        components(app).database.dispose()
    assert error(answers[0]) == error(answers[1])
    assert answers[0].status_code == 413 and "body" in answers[0].json["errors"]


def test_an_app_wide_step_runs_for_decisions_as_for_every_route(app, client, admin):
    """A step of the request pipeline (a rate limit, say) sees POST /v1/decisions and the
    routes Flask answers alike, and its answer is the caller's, with the request id."""
    seen = []

    def refuse_probe(environ):
        seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if environ.get("HTTP_X_PROBE"):
            return Response('{"code":429}', status=429, mimetype="application/json")
        return None

    app.wsgi_app.steps.append(refuse_probe)
    assert client.post("/v1/decisions", json=DECISION, headers=admin).status_code == 200
    assert client.get("/v1/policy-versions", headers=admin).status_code == 200
    refused = client.post("/v1/decisions", json=DECISION, headers={**admin, "X-Probe": "1"})
    assert seen[:2] == [("POST", "/v1/decisions"), ("GET", "/v1/policy-versions")]
    assert refused.status_code == 429 and refused.headers["X-Request-ID"]


def test_the_documented_decision_schema_is_the_one_the_route_loads_with(app):
    """The OpenAPI document's body of POST /v1/decisions comes from DECISION_IN, the schema
    instance DecisionRoute validates every body with."""
    view = app.view_functions["decisions.Decisions"].view_class.post
    documented = view._apidoc["arguments"]["parameters"][0]["schema"]
    assert documented is decisions.DECISION_IN
    assert decisions._LOAD.schema is decisions.DECISION_IN  # what DecisionRoute loads with
    spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/DecisionIn"}


def test_post_decisions_never_reaches_flask(app, client, admin):
    """The pipeline answers every POST /v1/decisions, errors too; no Flask hook sees it."""
    seen = []

    @app.before_request
    def note():
        seen.append(request.path)

    bodies = (DECISION, {"package": "nope", "subject": {"id": "ada"}}, {"subject": 1})
    answers = [client.post("/v1/decisions", json=body, headers=admin) for body in bodies]
    answers.append(client.post("/v1/decisions", json=DECISION))
    assert [a.status_code for a in answers] == [200, 404, 422, 401]
    assert seen == []


def test_decisions_are_counted_by_outcome_and_timed(client, admin, people):
    """Each decision counts under its outcome (a refused one as `error`) and in the latency
    histogram of its endpoint, as every route is timed."""
    for _ in range(3):
        client.post("/v1/decisions", json=DECISION, headers=admin)
    client.post("/v1/decisions", json={"package": "nope", "subject": {"id": "ada"}}, headers=admin)
    client.get("/v1/policy-versions", headers=admin)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'policyd_decisions_total{outcome="auto_approve"} 3.0' in text
    assert 'policyd_decisions_total{outcome="error"} 1.0' in text
    assert 'policyd_request_seconds_count{endpoint="decisions.Decisions",method="POST"} 4.0' in text
    versions = 'policyd_request_seconds_count{endpoint="versions.Versions",method="GET"} 1.0'
    assert versions in text


def test_an_unknown_route_is_not_timed(client, admin):
    """A 404 for a path no route matches adds no latency series."""
    assert client.get("/v1/no-such-thing", headers=admin).status_code == 404
    assert "no-such-thing" not in client.get("/metrics").get_data(as_text=True)


def test_a_coroutine_view_is_left_to_flask(app):
    """The app looks up once per function whether it is a coroutine: plain functions are
    called as they are, coroutines get Flask's own handling (here: its missing extra)."""

    def plain():
        return None

    async def coroutine():
        return None

    assert app.ensure_sync(plain) is plain
    assert app.ensure_sync(plain) is plain
    with pytest.raises(RuntimeError, match="async"):
        app.ensure_sync(coroutine)


def test_log_lines_written_during_a_request_carry_its_id(app, client, admin):
    """A JSON log line written while a request is handled names the request's id."""
    stream = io.StringIO()
    handler = logs.configure("INFO", stream=stream, json_lines=True)

    @app.get("/v1/_log-probe")
    def probe():
        logging.getLogger("policyd.probe").info("probing")
        return {}

    try:
        client.get("/v1/_log-probe", headers={**admin, "X-Request-ID": "log-7"})
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    probe_lines = [line for line in lines if line["logger"] == "policyd.probe"]
    assert probe_lines == [
        {
            "time": probe_lines[0]["time"],
            "level": "info",
            "logger": "policyd.probe",
            "message": "probing",
            "request_id": "log-7",
        }
    ]


def test_work_deferred_by_a_request_runs_once_its_answer_is_sent(caplog):
    """`after_response` work runs when the server closes the answer (after writing it),
    under the request's id; a failing piece is logged and the rest still runs."""
    events: list[str] = []

    def handler(environ, start_response):
        after_response(environ, lambda: events.append(f"refresh {logs.request_id.get()}"))
        after_response(environ, lambda: 1 / 0)
        after_response(environ, lambda: events.append("second"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"answer"]

    class Histogram:
        def labels(self, *_labels):
            return self

        def observe(self, _seconds):
            events.append("timed")

    pipeline = RequestPipeline(
        lambda environ, start_response: [],
        {"latency": Histogram()},
        routes={("GET", "/x"): ("x", handler)},
    )
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "HTTP_X_REQUEST_ID": "req-1"}
    answer = pipeline(environ, lambda status, headers, exc_info=None: None)
    assert b"".join(answer) == b"answer"
    assert events == ["timed"]  # the answer is written before any deferred work
    with caplog.at_level(logging.ERROR, logger="policyd.api.pipeline"):
        answer.close()
    assert events == ["timed", "refresh req-1", "second"]
    assert "work deferred after a response failed" in caplog.text
