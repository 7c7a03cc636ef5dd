"""POST /v1/decisions: directory subjects, trusted overlays, the decision log."""

from __future__ import annotations

import io
import json

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from policyd.api import create_app
from policyd.api.context import components
from policyd.services.decisions import DecisionService
from tests.api.test_versions import changed_files


def decide(client, headers, package, subject):
    return client.post(
        "/v1/decisions", json={"package": package, "subject": subject}, headers=headers
    )


def test_decision_uses_the_directory_and_is_logged(client, token, people):
    """The subject's groups come from the directory; the decision is logged with its input."""
    app_headers = token("portal", "app")
    response = decide(client, app_headers, "scope-a-readers", {"id": "ada"})
    assert response.status_code == 200
    decision = response.json
    assert (decision["decision"], decision["rule"]) == ("auto_approve", "eligible-members")
    logged = client.get(f"/v1/decisions/{decision['decision_id']}", headers=app_headers).json
    assert logged["input"]["subject"]["groups"] == [
        "Group.ScopeA.Approvers",
        "Group.ScopeA.Readers.Eligible",
    ]
    assert logged["version"] == decision["version"] and logged["principal"] == "portal"
    assert client.get("/v1/assignments", headers=app_headers).json == []  # no side effects


def test_untrusted_app_values_are_ignored_trusted_app_values_win(client, token, people):
    """An untrusted app cannot make bob eligible; a trusted app's supplied groups count."""
    claim = {"id": "bob", "groups": ["Group.ScopeA.Readers.Eligible"]}
    plain = decide(client, token("portal", "app"), "scope-a-readers", claim).json
    assert plain["decision"] == "require_approval"
    trusted = decide(client, token("trusted-app", "app"), "scope-a-readers", claim).json
    assert trusted["decision"] == "auto_approve"


def test_unknown_subject_is_404_for_untrusted_callers(client, token, people):
    """A subject missing from the directory is 404 naming subject.id."""
    response = decide(client, token("portal", "app"), "scope-a-readers", {"id": "ghost"})
    assert response.status_code == 404 and "subject.id" in response.json["errors"]


def test_users_ask_only_about_themselves(client, token, people):
    """A user may ask about themselves, not about others; auditors cannot ask."""
    assert decide(client, token("bob"), "scope-a-readers", {"id": "bob"}).status_code == 200
    assert decide(client, token("bob"), "scope-a-readers", {"id": "ada"}).status_code == 403
    assert (
        decide(client, token("aud", "auditor"), "scope-a-readers", {"id": "bob"}).status_code == 403
    )


def test_decision_log_filters(client, token, admin, people):
    """The log filters by subject, package, version and time; users see only their own."""
    decide(client, admin, "scope-a-readers", {"id": "ada"})
    decide(client, admin, "sales-support", {"id": "sam"})
    version = client.get("/readyz").json["version"]
    assert len(client.get(f"/v1/decisions?version={version}", headers=admin).json) == 2
    assert [
        d["subject_id"]
        for d in client.get("/v1/decisions?package=sales-support", headers=admin).json
    ] == ["sam"]
    assert client.get("/v1/decisions?since=2026-01-06T00:00:00Z", headers=admin).json == []
    assert [d["subject_id"] for d in client.get("/v1/decisions", headers=token("sam")).json] == [
        "sam"
    ]


def test_values_too_long_for_a_column_are_422_not_500(client, admin):
    """Over-long ids and fields are client errors on every backend."""
    too_long = "x" * 300
    response = client.put(f"/v1/users/{too_long}", json={}, headers=admin)
    assert response.status_code == 422
    field = client.put("/v1/users/ok", json={"department": too_long}, headers=admin)
    assert field.status_code == 422 and "department" in field.json["errors"]


@pytest.fixture
def elsewhere(app, database_url, clock):
    """A second app on the same database: another process, as far as caches are concerned."""
    other = create_app(
        {"POLICYD_DATABASE_URL": database_url, "POLICYD_POLICIES": "", "POLICYD_CLOCK": clock}
    )
    yield other
    components(other).decision_log.close()
    components(other).runtime.close()
    components(other).database.dispose()


ELIGIBLE = "/v1/groups/Group.ScopeA.Readers.Eligible/members/bob"


def test_this_processes_directory_changes_reach_the_next_decision(client, admin, people):
    """A membership written through this process clears its subject cache at once."""
    assert decide(client, admin, "scope-a-readers", {"id": "bob"}).json["decision"] == (
        "require_approval"
    )
    assert client.put(ELIGIBLE, headers=admin).status_code == 204
    assert decide(client, admin, "scope-a-readers", {"id": "bob"}).json["decision"] == (
        "auto_approve"
    )


def test_other_processes_changes_show_within_the_cache_ttl(app, client, admin, people, elsewhere):
    """Another process's write is seen once the cached subject expires (here: is dropped)."""
    assert decide(client, admin, "scope-a-readers", {"id": "bob"}).json["decision"] == (
        "require_approval"
    )
    assert elsewhere.test_client().put(ELIGIBLE, headers=admin).status_code == 204
    stale = decide(client, admin, "scope-a-readers", {"id": "bob"}).json["decision"]
    assert stale == "require_approval"  # at most POLICYD_SUBJECT_CACHE_SECONDS old
    components(app).subjects.clear()  # what the TTL does
    assert decide(client, admin, "scope-a-readers", {"id": "bob"}).json["decision"] == (
        "auto_approve"
    )


def test_requests_always_read_the_directory_afresh(client, admin, people, elsewhere):
    """A request is decided on current data even while decisions may use a cached subject."""
    decide(client, admin, "scope-a-readers", {"id": "bob"})  # caches bob
    assert elsewhere.test_client().put(ELIGIBLE, headers=admin).status_code == 204
    body = {"package": "scope-a-readers", "subject": {"id": "bob"}}
    request = client.post("/v1/requests", json=body, headers=admin).json
    assert request["rule"] == "eligible-members"


def test_a_trusted_overlay_never_reaches_another_caller(client, token, people):
    """The cache holds the directory's subject only, never what a trusted app supplied."""
    claim = {"id": "bob", "groups": ["Group.ScopeA.Readers.Eligible"]}
    trusted = decide(client, token("trusted-app", "app"), "scope-a-readers", claim).json
    assert trusted["decision"] == "auto_approve"
    plain = decide(client, token("portal", "app"), "scope-a-readers", claim).json
    assert plain["decision"] == "require_approval"


def test_a_decision_shows_sponsors_resolved_as_the_request_resolves_them(
    client, token, admin, people
):
    """For a guest whose organisation's sponsor is olga, POST /v1/decisions names user:olga
    where it said `sponsors`, and the request filed next waits for olga: one resolver."""
    org = {"display_name": "Northwind", "domains": ["northwind.example"]}
    org["internal_sponsors"] = ["olga"]
    assert client.put("/v1/organizations/northwind", json=org, headers=admin).status_code == 200
    client.put(
        "/v1/users/raj", json={"email": "raj@northwind.example", "type": "guest"}, headers=admin
    )
    raj = token("raj")

    decision = decide(client, raj, "merger-collaboration", {"id": "raj"}).json
    request = client.post(
        "/v1/requests", json={"package": "merger-collaboration"}, headers=raj
    ).json

    (stage,) = decision["approval"]["stages"]
    assert stage["approvers"] == ["sponsors"]
    assert stage["resolved"] == ["user:olga"]
    assert request["stages"][0]["approvers"] == ["olga"]


def test_a_decision_without_sponsors_resolves_managers_and_owners_as_before(client, token, people):
    """Sam's Sales Support decision resolves `manager` to user:max, stage 2 stays a group."""
    decision = decide(client, token("sam"), "sales-support", {"id": "sam"}).json
    stages = decision["approval"]["stages"]
    assert [stage["resolved"] for stage in stages] == [["user:max"], ["group:Sales.Ops"]]


def test_the_openapi_document_names_the_decision_schema(client):
    """The request body of POST /v1/decisions is documented by DecisionIn, its one validator."""
    spec = client.get("/openapi.json").json
    body = spec["paths"]["/v1/decisions"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/DecisionIn"}
    assert set(spec["components"]["schemas"]["DecisionIn"]["properties"]) == {
        "package",
        "subject",
        "request",
    }


DECISION = {"package": "scope-a-readers", "subject": {"id": "ada"}}


def test_an_unknown_query_parameter_on_a_decision_is_a_422_naming_it(client, admin):
    response = client.post("/v1/decisions?dry=1", json=DECISION, headers=admin)
    assert response.status_code == 422
    assert response.json["errors"] == {"query.dry": ["Unknown field."]}
    assert response.json["message"].endswith("this takes: none")


def test_a_body_of_another_content_type_is_read_as_no_body(client, admin):
    """As webargs reads a JSON body: a text/plain body is none, so both fields are missing."""
    response = client.post(
        "/v1/decisions", data=b'{"package": "p"}', content_type="text/plain", headers=admin
    )
    assert response.status_code == 422
    assert sorted(response.json["errors"]) == ["package", "subject"]


def test_a_chunked_body_past_the_limit_is_a_413_naming_body(app, admin):
    """Without a Content-Length the body is held to POLICYD_MAX_BODY_BYTES as it is read."""
    big = b'{"package": "' + b"p" * (2 << 20) + b'"}'
    environ = EnvironBuilder(
        path="/v1/decisions", method="POST", headers=admin, content_type="application/json"
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ |= {
        "wsgi.input": io.BytesIO(big),
        "wsgi.input_terminated": True,
        "HTTP_TRANSFER_ENCODING": "chunked",
    }
    body, status, _headers = run_wsgi_app(app, environ, buffered=True)
    assert status == "413 REQUEST ENTITY TOO LARGE"
    assert "body" in json.loads(b"".join(body))["errors"]


def test_an_unexpected_failure_is_a_500_in_the_error_shape_and_logged(
    client, admin, monkeypatch, caplog
):
    def fail(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(DecisionService, "decide", fail)
    response = client.post("/v1/decisions", json=DECISION, headers=admin)
    assert response.status_code == 500 and response.headers["X-Request-ID"]
    assert response.json["message"] == "internal error; see the server log"
    assert "boom" in caplog.text


def test_a_token_not_cached_is_checked_in_the_database(app, client, admin):
    """After the token cache forgets it, the token is looked up; an unknown one is a 401."""
    components(app).token_cache.clear()
    assert client.post("/v1/decisions", json=DECISION, headers=admin).status_code == 200
    refused = client.post(
        "/v1/decisions", json=DECISION, headers={"Authorization": "Bearer pd_unknown"}
    )
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"]
    assert refused.json["message"] == "the token is unknown, revoked or expired"


def test_an_auditor_is_refused_before_the_body_is_read(client, token):
    response = client.post(
        "/v1/decisions", data=b"{", content_type="application/json", headers=token("x", "auditor")
    )
    assert response.status_code == 403
    assert response.json["message"] == "this needs one of the roles: user, app, admin"


def test_a_new_version_is_picked_up_within_the_sync_interval(client, admin, database_url, clock):
    """Another process's decision route switches versions when its sync interval is over."""
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

        def version() -> str:
            # Closed as a server closes an answer once it is sent: the deferred poll runs then.
            with other_client.post("/v1/decisions", json=body, headers=admin) as answer:
                return answer.json["version"]

        before = version()
        published = client.post(
            "/v1/policy-versions", json={"files": changed_files()}, headers=admin
        ).json["id"]
        assert version() == before  # not yet
        components(other).sync._checked -= 60  # the interval is over
        # That request is answered by the version it has, and polls once its answer is sent:
        # the new version is built beside later requests, which a whole one answers.
        assert version() == before
        components(other).sync.join()
        assert version() == published
    finally:
        components(other).decision_log.close()
        components(other).runtime.close()
        components(other).database.dispose()


def test_a_due_version_poll_runs_once_the_decisions_answer_is_sent(app, client, admin, monkeypatch):
    """No decision waits on the poll for a new version: the request that finds it due is
    answered first, and the poll runs when the server closes that answer."""
    sync = components(app).sync
    polls: list[str] = []
    monkeypatch.setattr(sync, "poll", lambda: polls.append("poll"))
    sync._checked -= sync.interval  # the interval is over
    with client.post("/v1/decisions", json=DECISION, headers=admin) as answered:
        assert answered.status_code == 200
        assert polls == []  # answered before polling
        assert not sync.due  # taken by this request: the next ones do not poll too
    assert polls == ["poll"]
    with client.post("/v1/decisions", json=DECISION, headers=admin):
        pass
    assert polls == ["poll"]
