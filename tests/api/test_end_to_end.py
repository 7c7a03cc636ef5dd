"""Access requested, delivered and taken away again in a real LDAP, SCIM server and webhook."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from tests.conftest import Clock
from tests.connectors.ldap_server import Slapd, slapd
from tests.connectors.scim_server import ScimServer, scim_server
from tests.connectors.webhook_server import EVENT_ID_HEADER, SIGNATURE_HEADER, webhook_server
from tests.e2e_support import (
    BYSTANDER_DN,
    LDAP,
    SCIM,
    WEBHOOK,
    MakeStack,
    ldap_resource,
    make_stack,
    new_ldap_group,
    package_file,
    scim_resource,
    webhook_resource,
)

__all__ = ["make_stack", "scim_server", "slapd", "webhook_server"]  # fixtures for pytest

APP = "app:payroll"  # the webhook resource: whatever the receiving system calls it


def test_an_approved_request_is_delivered_and_removed_at_expiry(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, clock: Clock
):
    """An auto-approved request reaches slapd, the SCIM server and the receiver once the
    worker runs, and expiry takes it back out of all three."""
    ldap_group = new_ldap_group(slapd)
    scim_group = scim_server.create_group("Payroll")
    resources = [ldap_resource(ldap_group), scim_resource("Payroll"), webhook_resource(APP)]
    stack = make_stack({"payroll.yaml": package_file("payroll", resources)}, clock=clock)
    ada = stack.add_person("ada")

    request = stack.request("payroll", ada)
    assert request["state"] == "delivering"
    assert stack.ldap_members(ldap_group) == [BYSTANDER_DN]  # nothing before the worker runs
    stack.sweep()

    assert stack.get(f"/v1/requests/{request['id']}")["state"] == "delivered"
    assignment = stack.assignment(request)
    assert assignment["state"] == "active"
    assert Counter(stack.ldap_members(ldap_group)) == {BYSTANDER_DN: 1, ada.dn: 1}
    assert stack.scim_members(scim_group) == [ada.scim_id]
    (granted,) = stack.events("access.granted")
    assert (granted["user"]["id"], granted["resource"]) == (ada.user_id, APP)
    # The request's lifecycle went out too, like Entra's custom extensions, each once.
    (created,) = stack.events("request.created")
    (approved,) = stack.events("request.approved")
    for event in (created, approved):
        assert event["request"]["id"] == request["id"] and event["resource"] == APP
        assert event["user"] == granted["user"]
    assert (created["decision"], approved["approved_by"]) == ("auto_approve", None)
    assert len(stack.webhook.deliveries) == 3
    for delivery in stack.webhook.deliveries:
        assert delivery.path == "/events" and SIGNATURE_HEADER.lower() in delivery.headers
    assert granted["id"] in {d.headers[EVENT_ID_HEADER.lower()] for d in stack.webhook.deliveries}
    assert stack.webhook.rejected == 0  # the receiver verified every signature

    stack.worker.configure(reminders=(timedelta(hours=2),))
    clock.advance(hours=6, minutes=1)
    assert stack.sweep()["reminders"] == 1
    (expiring,) = stack.events("access.expiring")
    assert expiring["assignment"]["id"] == assignment["id"]
    assert (expiring["seconds_left"], expiring["resource"]) == (7200, APP)

    clock.advance(hours=8, seconds=1)
    assert clock() > datetime.fromisoformat(assignment["expires_at"])
    assert stack.sweep()["expired"] == 1

    assert stack.assignment(request)["state"] == "removed"
    assert stack.ldap_members(ldap_group) == [BYSTANDER_DN]
    assert stack.scim_members(scim_group) == []
    (removed,) = stack.events("access.removed")
    assert (removed["user"]["id"], removed["resource"]) == (ada.user_id, APP)
    assert stack.webhook.rejected == 0
    jobs = {(job.kind, job.connector, job.state) for job in stack.jobs()}
    assert jobs == {
        (kind, c, "done") for kind in ("grant", "revoke") for c in (LDAP, SCIM, WEBHOOK)
    }
    sends = sorted((job.role, job.connector, job.state) for job in stack.jobs("send"))
    assert sends == [
        (event, WEBHOOK, "done")
        for event in ("access.expiring", "request.approved", "request.created")
    ]


def test_overlapping_assignments_keep_the_group_until_the_last_one_ends(
    make_stack: MakeStack, slapd: Slapd, clock: Clock
):
    """Two packages granting one LDAP group: ending one leaves the membership in slapd and
    ending the other removes it."""
    group = new_ldap_group(slapd)
    files = {
        "short.yaml": package_file("short-access", [ldap_resource(group)], lifetime="PT1H"),
        "long.yaml": package_file("long-access", [ldap_resource(group)], lifetime="PT8H"),
    }
    stack = make_stack(files, clock=clock)
    ada = stack.add_person("ada")
    short = stack.request("short-access", ada)
    long = stack.request("long-access", ada)
    stack.sweep()
    assert [job.state for job in stack.jobs("grant")] == ["done", "done"]
    assert Counter(stack.ldap_members(group)) == {BYSTANDER_DN: 1, ada.dn: 1}

    clock.advance(hours=1, seconds=1)
    assert stack.sweep()["expired"] == 1
    assert stack.assignment(short)["state"] == "removed"
    assert stack.jobs("revoke") == []  # the long assignment still grants the group
    assert Counter(stack.ldap_members(group)) == {BYSTANDER_DN: 1, ada.dn: 1}

    assignment = stack.assignment(long)
    response = stack.client.delete(f"/v1/assignments/{assignment['id']}", headers=stack.admin)
    assert response.status_code == 200 and response.json["state"] == "expiring"
    stack.sweep()
    assert [job.state for job in stack.jobs("revoke")] == ["done"]
    assert stack.assignment(long)["state"] == "removed"
    assert stack.ldap_members(group) == [BYSTANDER_DN]
