"""Acceptance (issue 13): a quarterly review removes unreviewed access in real slapd and SCIM."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from policyd.api.context import components
from policyd.services.actor import SYSTEM
from policyd.services.reviews import ReviewService
from policyd.services.tokens import TokenService
from tests.connectors.ldap_server import Slapd, slapd
from tests.connectors.scim_server import ScimServer, scim_server
from tests.connectors.webhook_server import webhook_server
from tests.e2e_support import (
    BYSTANDER_DN,
    LDAP,
    SCIM,
    MakeStack,
    Stack,
    make_stack,
    new_ldap_group,
)

__all__ = ["make_stack", "scim_server", "slapd", "webhook_server"]  # fixtures for pytest


def payroll(ldap_group: str) -> str:
    return f"""apiVersion: policyd/v1
package:
  id: payroll
  displayName: Payroll
  owners: ["user:owner"]
  lifetime: {{permanent: true}}
  resources:
    - {{connector: {LDAP}, resource: "group:{ldap_group}", role: member}}
    - {{connector: {SCIM}, resource: "group:Payroll", role: member}}
  rules:
    - {{id: everyone, then: {{decision: auto_approve}}}}
  reviews:
    - id: quarterly
      description: Managers confirm who still needs payroll, every quarter.
      schedule: {{cron: "0 0 1 1,4,7,10 *", timezone: UTC}}
      duration: P14D
      reviewers: [manager]
      fallback: [owners]
      reminders: [P7D]
      onNoResponse: remove
"""


def reviews(stack: Stack, step: str) -> int:
    """Run a periodic step of ReviewService (open_due, close_due) at the stack's time."""
    with components(stack.app).database.session() as session:
        service = ReviewService(session, components(stack.app).runtime)
        return getattr(service, step)(now=stack.clock())


def token_for(stack: Stack, user_id: str) -> dict[str, str]:
    with components(stack.app).database.session() as session:
        _, plain = TokenService(session).create(SYSTEM, user_id, "user", now=stack.clock())
    return {"Authorization": f"Bearer {plain}"}


def test_a_quarterly_review_removes_unreviewed_access_through_slapd_and_scim(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, clock
):
    """kept's manager keeps kept's access; nobody answers for dropped. When the campaign
    ends dropped leaves the slapd and SCIM groups, kept stays; the audit and the CSV export
    show both items with who decided and what was applied."""
    ldap_group = new_ldap_group(slapd)
    scim_group = scim_server.create_group("Payroll")
    stack = make_stack({"payroll.yaml": payroll(ldap_group)}, clock=clock)
    boss = stack.add_person("boss")
    kept, dropped = stack.add_person("kept"), stack.add_person("dropped")
    for person in (kept, dropped):
        body = {"email": f"{person.user_id}@example.org", "manager_id": boss.user_id}
        response = stack.client.put(f"/v1/users/{person.user_id}", json=body, headers=stack.admin)
        assert response.status_code == 200
        stack.request("payroll", person)
    swept = stack.sweep()  # the schedule fires now: the worker's reviews.open task opens it
    assert swept["opened"] == 1
    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, kept.dn, dropped.dn}
    assert set(stack.scim_members(scim_group)) == {kept.scim_id, dropped.scim_id}
    assert reviews(stack, "open_due") == 0  # the step called directly: nothing left to open
    manager = token_for(stack, boss.user_id)
    pending = stack.client.get("/v1/reviews/items", headers=manager).json
    by_holder = {item["subject_id"]: item["id"] for item in pending}
    assert set(by_holder) == {kept.user_id, dropped.user_id}
    decided = stack.client.post(
        f"/v1/reviews/items/{by_holder[kept.user_id]}/decision",
        json={"decision": "keep", "justification": "runs the payroll close"},
        headers=manager,
    )
    assert decided.status_code == 200

    clock.now = clock().replace(day=15, hour=0) + timedelta(minutes=1)  # the campaign ended
    assert stack.sweep()["closed"] == 1  # reviews.close applies it; the outbox revokes

    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, kept.dn}
    assert set(stack.scim_members(scim_group)) == {kept.scim_id}
    applied = stack.get("/v1/audit?action=review.applied&page_size=100")
    assert sorted((r["after"]["subject_id"], r["after"]["result"]) for r in applied) == sorted(
        [(kept.user_id, "kept"), (dropped.user_id, "removed")]
    )
    assert {r["version"] for r in applied} == {stack.get("/readyz")["version"]}
    (campaign,) = stack.get("/v1/reviews/campaigns")
    export = stack.client.get(
        f"/v1/reviews/campaigns/{campaign['id']}/export", headers=stack.admin
    ).get_data(as_text=True)
    rows = {row["subject_id"]: row for row in csv.DictReader(io.StringIO(export))}
    assert (rows[kept.user_id]["decided_by"], rows[kept.user_id]["result"]) == (
        boss.user_id,
        "kept",
    )
    assert (rows[dropped.user_id]["decision"], rows[dropped.user_id]["result"]) == ("", "removed")
