"""Acceptance (issue 13): a department change over the API auto-assigns a package in real slapd
and SCIM within one worker sweep, and changing it back removes it after the grace period."""

from __future__ import annotations

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


def sales_crm(ldap_group: str) -> str:
    return f"""apiVersion: policyd/v1
package:
  id: sales-crm
  displayName: Sales CRM
  lifetime: {{duration: P90D}}
  resources:
    - {{connector: {LDAP}, resource: "group:{ldap_group}", role: member}}
    - {{connector: {SCIM}, resource: "group:SalesCRM", role: member}}
  rules:
    - {{id: sales, when: {{subject.department: Sales}}, then: {{decision: auto_approve}}}}
  autoAssign:
    when: {{subject.department: Sales}}
    grace: P7D
"""


def department(stack: Stack, user_id: str, name: str) -> None:
    response = stack.client.put(
        f"/v1/users/{user_id}", json={"department": name}, headers=stack.admin
    )
    assert response.status_code == 200, response.json


def held(stack: Stack, user_id: str) -> list[dict]:
    found = stack.get(f"/v1/assignments?subject={user_id}&page_size=100")
    return [a for a in found if a["state"] in ("delivering", "active", "failed")]


def test_a_department_change_auto_assigns_and_later_removes_access_in_slapd_and_scim(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, clock
):
    """ann moves to Sales: one sweep puts her in the slapd and SCIM groups, her assignment
    showing origin auto. kim requested the package and is in Sales too: nothing is added
    for her. Both move away: ann keeps access for the seven days' grace and loses it then,
    in both targets; kim's requested access stays."""
    ldap_group = new_ldap_group(slapd)
    scim_group = scim_server.create_group("SalesCRM")
    stack = make_stack({"sales-crm.yaml": sales_crm(ldap_group)}, clock=clock)
    ann, kim = stack.add_person("ann"), stack.add_person("kim")
    department(stack, kim.user_id, "Sales")
    requested = stack.assignment(stack.request("sales-crm", kim))
    stack.sweep()
    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, kim.dn}

    department(stack, ann.user_id, "Sales")
    swept = stack.sweep()
    assert swept["auto_added"] == 1
    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, ann.dn, kim.dn}
    assert set(stack.scim_members(scim_group)) == {ann.scim_id, kim.scim_id}
    (auto,) = held(stack, ann.user_id)
    assert (auto["origin"], auto["state"], auto["expires_at"]) == ("auto", "active", None)
    assert [a["id"] for a in held(stack, kim.user_id)] == [requested["id"]]
    assert requested["origin"] == "request"
    (created,) = stack.get(f"/v1/audit?action=request.auto_assigned&object_id={auto['request_id']}")
    assert (created["actor"], created["version"]) == ("system", stack.get("/readyz")["version"])

    department(stack, ann.user_id, "Marketing")
    department(stack, kim.user_id, "Marketing")
    assert stack.sweep()["auto_graced"] == 1
    clock.advance(days=6)
    stack.sweep()
    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, ann.dn, kim.dn}
    clock.advance(days=1)
    stack.sweep()  # the grace period is over: expiry revokes through the connectors
    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, kim.dn}
    assert set(stack.scim_members(scim_group)) == {kim.scim_id}
    assert held(stack, ann.user_id) == []
    assert [a["id"] for a in held(stack, kim.user_id)] == [requested["id"]]
