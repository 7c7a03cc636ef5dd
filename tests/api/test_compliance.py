"""GET /v1/access-report and GET /v1/audit/verify over HTTP."""

from __future__ import annotations

from sqlalchemy import text

from policyd.api.context import components


def approved_request(client, token, subject: str = "bob", approver: str = "carol") -> dict:
    request = client.post(
        "/v1/requests", json={"package": "scope-a-readers"}, headers=token(subject)
    ).json
    client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token(approver))
    return request


def test_access_report_names_the_holder_with_request_approver_rule_and_version(
    client, token, admin, people, clock
):
    """A holder at a moment comes with its assignment, request, approver, rule and version."""
    request = approved_request(client, token)
    clock.advance(hours=1)
    response = client.get(
        "/v1/access-report?package=scope-a-readers&at=2026-01-05T09:30:00Z",
        headers=token("audit", "auditor"),
    )
    assert response.status_code == 200, response.json
    [holding] = response.json
    assert holding["subject_id"] == "bob" and holding["held_until"] is None
    [terms] = holding["terms"]
    assert terms["request_id"] == request["id"]
    assert (terms["rule"], terms["version"]) == ("everyone-else", request["version"])
    assert [a["approver"] for a in terms["approved_by"]] == ["carol"]
    assert '"total": 1' in response.headers["X-Pagination"]


def test_access_report_before_the_grant_is_empty(client, token, admin, people):
    """A moment before anyone held the package lists nobody."""
    approved_request(client, token)
    response = client.get(
        "/v1/access-report?package=scope-a-readers&at=2026-01-05T08:59:59Z", headers=admin
    )
    assert response.status_code == 200 and response.json == []


def test_a_bad_access_report_query_is_a_422_naming_the_field(client, admin):
    """No time, a period that ends before it starts, or two targets: 422 naming the field."""
    cases = {
        "package=p": "query.at",
        "package=p&from=2026-01-05T00:00:00Z&to=2026-01-01T00:00:00Z": "query.to",
        "package=p&subject=s&at=2026-01-05T00:00:00Z": "query.subject",
        "package=p&at=2026-01-05T00:00:00": "query.at",
    }
    for query, field in cases.items():
        response = client.get(f"/v1/access-report?{query}", headers=admin)
        assert response.status_code == 422, query
        assert field in response.json["errors"], (query, response.json)


def test_audit_verify_reports_an_intact_chain_and_then_the_edited_record(
    app, client, token, admin, people
):
    """The chain verifies with its anchor; after an edit in the database the answer names
    the record."""
    approved_request(client, token)
    report = client.get("/v1/audit/verify", headers=admin).json
    assert report["intact"] and report["broken"] == 0
    assert report["anchor"].endswith(f"@{report['last_id']}")
    anchored = client.get(f"/v1/audit/verify?from_anchor={report['anchor']}", headers=admin)
    assert anchored.json["intact"] and anchored.json["records"] == 1
    with components(app).database.engine.begin() as connection:
        connection.execute(text("UPDATE audit SET actor = 'mallory' WHERE id = 2"))
    broken = client.get("/v1/audit/verify", headers=admin).json
    assert not broken["intact"]
    assert broken["problems"][0]["id"] == 2


def test_audit_verify_refuses_a_malformed_anchor(client, admin):
    """from_anchor must read HASH@ID: 422 naming it."""
    response = client.get("/v1/audit/verify?from_anchor=nope", headers=admin)
    assert response.status_code == 422 and "query.from_anchor" in response.json["errors"]


def test_the_openapi_document_describes_the_report(client):
    """The access report's answer has a documented schema with the terms of each holding."""
    spec = client.get("/openapi.json").json
    answer = spec["paths"]["/v1/access-report"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["items"]["$ref"].endswith("Holding")
    assert "terms" in spec["components"]["schemas"]["Holding"]["properties"]
