"""Removing a connected organisation in the real targets: the guest's access leaves slapd and
the SCIM server, then POLICYD_EXTERNAL_USERS locks and deletes their slapd account."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from tests.conftest import Clock
from tests.connectors.ldap_server import USER_PASSWORD, Slapd, slapd
from tests.connectors.scim_server import ScimServer, scim_server
from tests.connectors.webhook_server import webhook_server
from tests.e2e_support import (
    BYSTANDER_DN,
    LDAP,
    SCIM,
    MakeStack,
    Person,
    Stack,
    ldap_resource,
    make_stack,
    new_ldap_group,
    package_file,
    scim_resource,
)

__all__ = ["make_stack", "scim_server", "slapd", "webhook_server"]  # fixtures for pytest


def person(stack: Stack, name: str, domain: str, kind: str) -> Person:
    """A `kind` (guest or member) at `domain` in policyd, slapd and the SCIM server."""
    user_id = f"{stack.prefix}-{name}"
    email = f"{user_id}@{domain}"
    body = {"email": email, "type": kind}
    response = stack.client.put(f"/v1/users/{user_id}", json=body, headers=stack.admin)
    assert response.status_code == 200, response.json
    return Person(user_id, stack.slapd.add_user(user_id), stack.scim.create_user(user_id, email))


def test_removing_an_organization_takes_its_guests_access_out_of_the_targets(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, clock: Clock
):
    """The guest and a member of the same domain hold a package granting an LDAP and a SCIM
    group; after the organisation's removal the worker revokes the guest's memberships (the
    member's stay), locks the guest's LDAP account, and deletes it 30 days later."""
    group = new_ldap_group(slapd)
    scim_group = scim_server.create_group("Partners")
    resources = [ldap_resource(group), scim_resource("Partners")]
    stack = make_stack({"partners.yaml": package_file("partners", resources, "P90D")}, clock=clock)
    stack.worker.configure(external_users="disable_then_delete", delete_after=timedelta(days=30))
    domain = f"{stack.prefix}.example"
    org = {"display_name": "Northwind", "domains": [domain]}
    assert (
        stack.client.put("/v1/organizations/nw", json=org, headers=stack.admin).status_code == 200
    )
    raj, mia = person(stack, "raj", domain, "guest"), person(stack, "mia", domain, "member")
    for holder in (raj, mia):
        stack.request("partners", holder)
    stack.sweep()
    assert Counter(stack.ldap_members(group)) == {BYSTANDER_DN: 1, raj.dn: 1, mia.dn: 1}
    assert sorted(stack.scim_members(scim_group)) == sorted([raj.scim_id, mia.scim_id])

    removed = stack.client.delete("/v1/organizations/nw", headers=stack.admin)
    assert removed.status_code == 200, removed.json
    assert (removed.json["guests"], removed.json["assignments_ended"]) == (1, 1)
    stack.sweep()  # the revokes
    assert Counter(stack.ldap_members(group)) == {BYSTANDER_DN: 1, mia.dn: 1}
    assert stack.scim_members(scim_group) == [mia.scim_id]
    assert [job.state for job in stack.jobs("revoke")] == ["done", "done"]

    clock.advance(minutes=5)
    assert stack.sweep()["disabled"] == 1
    assert not slapd.can_bind(raj.dn, USER_PASSWORD)
    assert slapd.can_bind(mia.dn, USER_PASSWORD)
    disabled = {(job.connector, job.subject_id) for job in stack.jobs("disable_user")}
    assert disabled == {(LDAP, raj.user_id), (SCIM, raj.user_id)}

    clock.advance(days=30)
    assert stack.sweep()["deleted"] == 1
    assert [job.state for job in stack.jobs("delete_user", connector=LDAP)] == ["done"]
    assert not slapd.can_bind(raj.dn, USER_PASSWORD)
