"""X-Request-ID: every answer carries one; the caller's is kept when it is a plain token."""

from __future__ import annotations

import io
import json
import logging

import pytest

from policyd import logs

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


def test_a_decision_answered_on_the_fast_path_carries_the_request_id(client, admin):
    """Plain decisions (answered before Flask once the token is cached) return the id."""
    for _ in range(2):  # the first call caches the token; the second takes the fast path
        response = client.post(
            "/v1/decisions", json=DECISION, headers={**admin, "X-Request-ID": "fast-1"}
        )
        assert response.status_code == 200, response.json
        assert response.headers["X-Request-ID"] == "fast-1"


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
