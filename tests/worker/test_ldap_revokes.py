"""A mass expiry through the ldap connector, on both databases and a real slapd: each revoke
job of a batch gets its own group's outcome, and a slapd that is down loses none of them."""

from __future__ import annotations

from policyd.domain import JobState
from tests.conftest import Clock
from tests.connectors.ldap_server import GROUPS, Slapd, slapd
from tests.connectors.scim_server import scim_server
from tests.connectors.webhook_server import webhook_server
from tests.e2e_support import (
    BYSTANDER_DN,
    MakeStack,
    Stack,
    ldap_resource,
    make_stack,
    new_ldap_group,
    package_file,
)

__all__ = ["make_stack", "scim_server", "slapd", "webhook_server"]  # fixtures for pytest

PEOPLE = ("ann", "ben", "cy", "dee")


def granted(make_stack: MakeStack, slapd: Slapd, clock: Clock, groups: list[str]) -> Stack:
    """A stack whose `payroll` package grants `groups`, each delivered to PEOPLE."""
    resources = [ldap_resource(group) for group in groups]
    stack = make_stack({"payroll.yaml": package_file("payroll", resources)}, clock=clock)
    people = [stack.add_person(name) for name in PEOPLE]
    for person in people:
        stack.request("payroll", person)
    stack.sweep()
    for group in groups:
        assert sorted(stack.ldap_members(group)) == sorted([BYSTANDER_DN, *(p.dn for p in people)])
    return stack


def test_a_missing_group_fails_only_its_own_revokes_in_a_batch(
    make_stack: MakeStack, slapd: Slapd, clock: Clock
):
    """The revokes of an expiry batch over two groups run as one bulk call: those of the
    group deleted from slapd meanwhile fail for good, naming it; the others are done."""
    kept, deleted = new_ldap_group(slapd), new_ldap_group(slapd)
    stack = granted(make_stack, slapd, clock, [kept, deleted])
    admin = slapd.admin()
    try:
        assert admin.delete(f"cn={deleted},{GROUPS}"), admin.result
    finally:
        admin.unbind()
    clock.advance(hours=9)
    stack.sweep()
    revokes = stack.jobs("revoke")
    assert len(revokes) == 2 * len(PEOPLE)
    assert {(job.resource, job.state) for job in revokes} == {
        (f"group:{kept}", JobState.DONE),
        (f"group:{deleted}", JobState.FAILED),
    }
    for job in revokes:
        if job.state == JobState.FAILED:
            assert "noSuchObject" in job.last_error and deleted in job.last_error
            assert job.attempts == 1
    assert stack.ldap_members(kept) == [BYSTANDER_DN]


def test_revokes_that_fail_while_slapd_is_down_are_retried_and_done(
    make_stack: MakeStack, slapd: Slapd, clock: Clock
):
    """With slapd stopped, every revoke of the batch backs off with a retryable error and
    stays queued; once slapd is back and the backoff has passed, one sweep removes them all."""
    group = new_ldap_group(slapd)
    stack = granted(make_stack, slapd, clock, [group])
    clock.advance(hours=9)
    slapd.stop()
    try:
        stack.sweep()
        revokes = stack.jobs("revoke")
        assert len(revokes) == len(PEOPLE)
        assert {(job.state, job.attempts) for job in revokes} == {(JobState.QUEUED, 1)}
        assert all("127.0.0.1" in job.last_error for job in revokes)
    finally:
        slapd.start()
    clock.advance(hours=1)
    stack.sweep()
    assert {job.state for job in stack.jobs("revoke")} == {JobState.DONE}
    assert stack.ldap_members(group) == [BYSTANDER_DN]
    assert {assignment.state for assignment in stack.assignments()} == {"removed"}
