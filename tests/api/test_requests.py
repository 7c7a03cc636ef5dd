"""Requests through their life: auto-approval, stages, denial, cancellation, idempotency."""

from __future__ import annotations

import threading

from policyd.api.context import components


def file(client, headers, package, subject=None, **extra):
    body = {"package": package, **extra}
    if subject:
        body["subject"] = {"id": subject}
    return client.post("/v1/requests", json=body, headers=headers)


def test_eligible_member_is_auto_approved_and_delivered(client, token, people):
    """An auto-approved request is delivered: an assignment and the directory membership exist."""
    ada = token("ada")
    response = file(client, ada, "scope-a-readers")
    assert response.status_code == 201, response.json
    request = response.json
    assert request["state"] == "delivered"
    assert request["rule"] == "eligible-members" and len(request["version"]) == 12
    assert request["expires_at"] == "2026-01-05T17:00:00+00:00"
    assignments = client.get("/v1/assignments", headers=ada).json
    assert [(a["package"], a["state"], a["rule"]) for a in assignments] == [
        ("scope-a-readers", "active", "eligible-members")
    ]
    assert assignments[0]["version"] == request["version"]
    members = client.get("/v1/groups/Group.ScopeA.Readers/members", headers=token("app1", "app"))
    assert members.json == [{"user_id": "ada"}]


def test_approval_by_a_group_member_delivers(client, token, people):
    """A pending request waits for one resolved approver; their approval delivers it."""
    response = file(client, token("bob"), "scope-a-readers")
    request = response.json
    assert (request["state"], request["stage"]) == ("pending_approval", 1)
    assert request["stages"][0]["approvers"] == ["ada", "carol"]  # never the requester
    inbox = client.get("/v1/requests?approver=me", headers=token("carol")).json
    assert [r["id"] for r in inbox] == [request["id"]]
    approved = client.post(
        f"/v1/requests/{request['id']}/approve", json={"comment": "ok"}, headers=token("carol")
    )
    assert approved.status_code == 200, approved.json
    assert approved.json["state"] == "delivered"
    assert approved.json["approvals"][0]["approver"] == "carol"


def test_requester_in_the_approver_group_cannot_approve_their_own_request(client, token, people):
    """Bob is an approver, but never of his own request: 403."""
    request = file(client, token("bob"), "scope-a-readers").json
    response = client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("bob"))
    assert response.status_code == 403
    assert "own request" in response.json["message"]


def test_only_resolved_approvers_may_approve(client, token, people):
    """An uninvolved user does not even see the request (404); an admin who is not an
    approver of the stage gets 403."""
    request = file(client, token("bob"), "scope-a-readers").json
    url = f"/v1/requests/{request['id']}/approve"
    assert client.post(url, json={}, headers=token("sam")).status_code == 404
    assert client.post(url, json={}, headers=token("root", "admin")).status_code == 403


def test_two_concurrent_approvals_one_wins_one_gets_409(client, token, people, app):
    """Two approvers of the same stage at once: exactly one succeeds, the other gets 409."""
    request = file(client, token("bob"), "scope-a-readers").json
    headers = [token("carol"), token("ada")]
    codes: list[int] = []
    barrier = threading.Barrier(2)

    def approve(h):
        with app.test_client() as own:
            barrier.wait()
            codes.append(
                own.post(f"/v1/requests/{request['id']}/approve", json={}, headers=h).status_code
            )

    threads = [threading.Thread(target=approve, args=(h,)) for h in headers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 409]
    assignments = client.get("/v1/assignments?subject=bob", headers=token("root", "admin")).json
    assert len(assignments) == 1


def test_two_stage_approval_manager_then_group(client, token, people):
    """Sales Support: the manager approves stage 1, then Sales Ops stage 2; justification needed."""
    sam = token("sam")
    missing = file(client, sam, "sales-support")
    assert missing.status_code == 422 and "justification" in missing.json["errors"]
    request = file(client, sam, "sales-support", justification="launch week").json
    assert request["stages"][0]["approvers"] == ["max"]
    assert request["stages"][1]["approvers"] == ["olga"]
    after_one = client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("max"))
    assert (after_one.json["state"], after_one.json["stage"]) == ("pending_approval", 2)
    early = client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("max"))
    assert early.status_code == 403
    done = client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("olga"))
    assert done.json["state"] == "delivered"


def test_idempotency_key_returns_the_first_request(client, token, people):
    """The same Idempotency-Key within 24 hours returns the same request with 200."""
    bob = {**token("bob"), "Idempotency-Key": "k-1"}
    first = file(client, bob, "scope-a-readers")
    again = file(client, bob, "scope-a-readers")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json["id"] == again.json["id"]


def test_bad_input_names_the_field(client, token, people):
    """Unknown packages, bad durations and unknown keys are 4xx naming the field."""
    bob = token("bob")
    assert file(client, bob, "nope").json["errors"] == {"package": ["no access package 'nope'"]}
    bad = file(client, bob, "scope-a-readers", duration="8 hours")
    assert bad.status_code == 422 and "duration" in bad.json["errors"]
    unknown = client.post("/v1/requests", json={"package": "x", "colour": 1}, headers=bob)
    assert unknown.status_code == 422 and "colour" in unknown.json["errors"]


def test_a_stage_that_times_out_escalates_once_then_expires(
    app, client, token, admin, people, clock
):
    """The worker's sweep escalates Sales Support stage 1 (the manager, 3 days) to Sales Ops,
    then expires it; the API shows each step (the steps themselves: tests/services)."""
    request = file(client, token("sam"), "sales-support", justification="launch").json
    worker = components(app).worker
    clock.advance(days=2)
    assert worker.sweep(now=clock())["escalated"] == 0
    clock.advance(days=1, seconds=1)
    assert worker.sweep(now=clock())["escalated"] == 1
    shown = client.get(f"/v1/requests/{request['id']}", headers=admin).json
    assert (shown["state"], shown["stages"][0]["approvers"]) == ("pending_approval", ["olga"])
    assert (
        client.get("/v1/requests?approver=me", headers=token("olga")).json[0]["id"]
        == (request["id"])
    )
    clock.advance(days=3, seconds=1)
    assert worker.sweep(now=clock())["timed_out"] == 1
    ended = client.get(f"/v1/requests/{request['id']}", headers=admin).json
    assert ended["state"] == "expired"
    assert ended["reason"] == "stage 1 was not decided within its timeout"
    late = client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=token("olga"))
    assert late.status_code == 409
