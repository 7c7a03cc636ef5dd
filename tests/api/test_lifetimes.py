"""Lifetimes count from the approval that grants access, not from the filing of the request."""

from __future__ import annotations

from datetime import datetime, timedelta

from policyd.api.context import components
from policyd.rules import load_bundle
from policyd.store.models import DecisionRecord
from tests.conftest import POLICIES


def file(client, headers, package, **extra):
    return client.post("/v1/requests", json={"package": package, **extra}, headers=headers)


def approve(client, headers, request):
    return client.post(f"/v1/requests/{request['id']}/approve", json={}, headers=headers)


def test_a_request_that_waits_for_approval_keeps_its_whole_lifetime(
    client, token, admin, people, clock
):
    """Bob's 8-hour Scope A access, approved 3 hours after he asked, lasts 8 hours from the
    approval; the assignment starts and ends then."""
    request = file(client, token("bob"), "scope-a-readers").json
    clock.advance(hours=3)

    approved = approve(client, token("carol"), request).json

    ends = clock() + timedelta(hours=8)
    assert datetime.fromisoformat(approved["expires_at"]) == ends
    (assignment,) = client.get("/v1/assignments?subject=bob", headers=admin).json
    assert datetime.fromisoformat(assignment["starts_at"]) == clock()
    assert datetime.fromisoformat(assignment["expires_at"]) == ends


def test_the_request_keeps_the_lifetime_explanation_with_the_grant(
    app, client, token, admin, people, clock
):
    """The stored request says how its lifetime was made, clamp included, and that it was
    counted from the approval; the decision-log entry keeps the explanation too."""
    request = file(client, token("bob"), "scope-a-readers", duration="PT10H").json
    assert request["lifetime"]["clamped"] is True
    assert "longer than the default" in request["lifetime"]["explanation"]
    clock.advance(hours=1)

    approved = approve(client, token("carol"), request).json

    lifetime = approved["lifetime"]
    assert lifetime["clamped"] is True
    assert lifetime["span_seconds"] == 8 * 3600 and lifetime["not_after"] is None
    assert lifetime["granted_at"] == clock().isoformat()
    assert lifetime["explanation"].endswith(f"counted from approval at {clock().isoformat()}")
    assert "longer than the default" in lifetime["explanation"]
    with components(app).database.session() as session:
        logged = session.get(DecisionRecord, request["decision_id"])
        assert logged.result["lifetime"]["clamped"] is True
        assert "longer than the default" in logged.result["lifetime"]["explanation"]


def quarter_end_request(client, token, admin):
    """fin asks for quarter-end posting rights (until the next quarter starts); ctl, a
    controller, approves."""
    client.put("/v1/users/fin", json={"department": "Finance"}, headers=admin)
    client.put("/v1/users/ctl", json={"department": "Finance"}, headers=admin)
    client.put("/v1/groups/Finance.Controllers", json={}, headers=admin)
    client.put("/v1/groups/Finance.Controllers/members/ctl", headers=admin)
    request = file(client, token("fin"), "quarter-end-close").json
    assert request["state"] == "pending_approval", request
    return request


def test_a_request_approved_after_its_window_ended_is_not_granted(
    client, token, admin, people, clock
):
    """Filed an hour before the quarter ends and approved an hour after, the request ends
    as expired with the reason, and no access is granted (nor revoked seconds later)."""
    clock.now = datetime.fromisoformat("2026-03-31T23:00:00+00:00")
    request = quarter_end_request(client, token, admin)
    assert request["expires_at"] == "2026-04-01T00:00:00+00:00"
    clock.advance(hours=2)

    answered = approve(client, token("ctl"), request).json

    assert answered["state"] == "expired"
    assert "window ended at 2026-04-01T00:00:00+00:00" in answered["reason"]
    assert client.get("/v1/assignments?subject=fin", headers=admin).json == []
    assert client.get("/v1/jobs?kind=grant", headers=admin).json == []


def test_a_fixed_end_is_kept_when_approved_within_the_window(client, token, admin, people, clock):
    """Approved before the quarter ends, access still ends when the quarter does: a fixed
    end does not move with the approval."""
    clock.now = datetime.fromisoformat("2026-03-30T09:00:00+00:00")
    request = quarter_end_request(client, token, admin)
    clock.advance(hours=20)

    approved = approve(client, token("ctl"), request).json

    assert approved["state"] == "delivered"
    assert approved["expires_at"] == "2026-04-01T00:00:00+00:00"


def test_an_extension_counts_its_lifetime_from_its_own_approval(
    client, token, admin, people, clock
):
    """Sam's 90-day Sales Support access is extended; the extension, approved two days after
    it was asked for, ends 90 days after that approval."""
    sam = token("sam")
    request = file(client, sam, "sales-support", justification="launch").json
    approve(client, token("max"), request)
    approve(client, token("olga"), request)
    (assignment,) = client.get("/v1/assignments", headers=sam).json
    extension = client.post(
        f"/v1/assignments/{assignment['id']}/extend", json={"justification": "more"}, headers=sam
    ).json
    clock.advance(days=2)

    approve(client, token("max"), extension)
    done = approve(client, token("olga"), extension).json

    assert done["state"] == "delivered"
    ends = clock() + timedelta(days=90)
    assert datetime.fromisoformat(done["expires_at"]) == ends
    shown = client.get(f"/v1/assignments/{assignment['id']}", headers=admin).json
    assert datetime.fromisoformat(shown["expires_at"]) == ends


PERMANENT = """apiVersion: policyd/v1
package:
  id: wiki-editors
  displayName: Wiki editors
  resources:
    - {connector: directory, resource: "group:Wiki.Editors"}
  lifetime: {permanent: true}
  rules:
    - id: carol-approves
      then:
        decision: require_approval
        approval: {stages: [{approvers: ["user:carol"], timeout: P7D}]}
"""


def test_permanent_access_approved_later_stays_permanent(client, token, admin, people, clock):
    """A permanent package approved two days after the request is granted with no end, and
    the request says so."""
    files = {"wiki.yaml": PERMANENT, **load_bundle(POLICIES).files}
    assert client.post("/v1/policy-versions", json={"files": files}, headers=admin).status_code
    request = file(client, token("bob"), "wiki-editors").json
    clock.advance(days=2)

    approved = approve(client, token("carol"), request).json

    assert approved["state"] == "delivered" and approved["expires_at"] is None
    assert approved["lifetime"]["span_seconds"] is None
    assert approved["lifetime"]["expires_at"] is None
    assert approved["lifetime"]["explanation"].startswith("permanent: no end date")
