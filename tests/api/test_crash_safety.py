"""Delivery survives a worker killed mid-batch and a connector that is down for a while."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from policyd.api.context import components
from policyd.store.models import Assignment
from tests.conftest import Clock
from tests.connectors.ldap_server import Slapd, slapd
from tests.connectors.scim_server import ScimServer, scim_server
from tests.connectors.webhook_server import webhook_server
from tests.e2e_support import (
    BYSTANDER_DN,
    SCIM,
    MakeStack,
    Stack,
    WorkerProcess,
    ldap_resource,
    make_stack,
    new_ldap_group,
    package_file,
    scim_resource,
    webhook_resource,
)

__all__ = ["make_stack", "scim_server", "slapd", "webhook_server"]  # fixtures for pytest

APP = "app:payroll"
PEOPLE = 30
# Jobs done when the first worker is killed, of PEOPLE * 3: past the LDAP and SCIM jobs (run
# in bulk, 30 at once each) and into the webhook ones (20 per claim, one by one).
KILL_AFTER = 65


def payroll(make_stack: MakeStack, slapd: Slapd, scim: ScimServer, clock: Clock):
    """A stack whose `payroll` package grants an LDAP group, a SCIM group and a webhook app."""
    ldap_group = new_ldap_group(slapd)
    scim_group = scim.create_group("Payroll")
    resources = [ldap_resource(ldap_group), scim_resource("Payroll"), webhook_resource(APP)]
    stack = make_stack({"payroll.yaml": package_file("payroll", resources)}, clock=clock)
    return stack, ldap_group, scim_group


def kill_mid_batch_then_recover(
    stack: Stack, kind: str, log: Path, lease: str = "PT1S"
) -> set[str]:
    """Run `policyd worker` (with job lease `lease`), SIGKILL it once KILL_AFTER `kind` jobs
    are done, start another and wait until every `kind` job is done.

    Returns:
        The ids of the jobs that were not done when the first worker died.
    """
    total = PEOPLE * 3

    def done() -> int:
        return len(stack.jobs(kind, state="done"))

    first = WorkerProcess(stack, log, lease=lease)
    second = WorkerProcess(stack, log, lease=lease)
    try:
        first.start()
        first.wait_for(lambda: done() >= KILL_AFTER, f"{KILL_AFTER} {kind}s done")
        first.kill()
        left = [job for job in stack.jobs(kind) if job.state != "done"]
        assert len(stack.jobs(kind)) == total
        assert 0 < len(left) < total, "the kill did not land in the middle of the batch"
        # The dead worker's claimed jobs wait for their lease to lapse; the rest are queued.
        assert "running" in {job.state for job in left}
        assert {job.state for job in left} <= {"running", "queued"}
        second.start()
        second.wait_for(lambda: done() == total, f"all {kind}s done")
    finally:
        first.kill()
        second.stop()
    return {job.id for job in left if job.state == "running"}


def test_a_worker_killed_mid_batch_loses_and_repeats_nothing(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, tmp_path: Path
):
    """Grants, then revokes, for 30 people with the worker SIGKILLed mid-batch and restarted
    end with each person exactly once in, then out of, slapd, the SCIM group and the app."""
    # The dead worker had claimed the whole batch, so its unfinished jobs stay `running` until
    # their lease lapses (1 s here) or a worker of the same machine sees the process is gone.
    # The subprocess works in real time, so the requests are made at the real time too.
    clock = Clock(datetime.now(UTC))
    stack, ldap_group, scim_group = payroll(make_stack, slapd, scim_server, clock)
    stack.webhook.delay = 0.05  # slows each delivery so that the kill lands mid-batch
    people = [stack.add_person(f"p{number:02}") for number in range(PEOPLE)]
    requests = [stack.request("payroll", person) for person in people]
    assert {request["state"] for request in requests} == {"delivering"}

    reclaimed = kill_mid_batch_then_recover(stack, "grant", tmp_path / "grant-worker.log")

    expected_dns = {BYSTANDER_DN: 1} | {person.dn: 1 for person in people}
    assert Counter(stack.ldap_members(ldap_group)) == expected_dns
    assert Counter(stack.scim_members(scim_group)) == {person.scim_id: 1 for person in people}
    granted = Counter(event["user"]["id"] for event in stack.events("access.granted"))
    assert granted == {person.user_id: 1 for person in people}
    assert stack.webhook.members[APP] == {person.user_id for person in people}
    assert stack.webhook.rejected == 0
    assert stack.jobs("grant", "revoke", "notify", state="failed") == []
    # Jobs done before the kill ran once; the others a second time, after their lease lapsed.
    attempts = {job.id: job.attempts for job in stack.jobs("grant")}
    assert attempts == {id: 2 if id in reclaimed else 1 for id in attempts}
    delivered = stack.get(f"/v1/requests?state=delivered&page_size={PEOPLE}")
    assert len(delivered) == PEOPLE

    with components(stack.app).database.session() as session:
        # Backdated rather than waited for: the worker's own sweep expires them all.
        session.execute(update(Assignment).values(expires_at=clock() - timedelta(minutes=1)))
        session.commit()

    reclaimed = kill_mid_batch_then_recover(stack, "revoke", tmp_path / "revoke-worker.log")

    assert stack.ldap_members(ldap_group) == [BYSTANDER_DN]
    assert stack.scim_members(scim_group) == []
    removed = Counter(event["user"]["id"] for event in stack.events("access.removed"))
    assert removed == {person.user_id: 1 for person in people}
    assert stack.webhook.members[APP] == set()
    assert stack.jobs("grant", "revoke", "notify", state="failed") == []
    attempts = {job.id: job.attempts for job in stack.jobs("revoke")}
    assert attempts == {id: 2 if id in reclaimed else 1 for id in attempts}
    assert {assignment.state for assignment in stack.assignments()} == {"removed"}


def test_jobs_for_a_connector_that_is_down_back_off_and_deliver_when_it_is_back(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, clock: Clock
):
    """While the SCIM server answers 503 its grants back off and stay queued; once it is back
    and the backoff has passed, one more run delivers every grant."""
    stack, ldap_group, scim_group = payroll(make_stack, slapd, scim_server, clock)
    people = [stack.add_person(name) for name in ("ann", "ben", "cy")]
    scim_server.outage.down = True
    requests = [stack.request("payroll", person) for person in people]

    stack.sweep()
    clock.advance(seconds=6)  # past the first backoff (at most 5 s)
    stack.sweep()

    scim_jobs = stack.jobs("grant", connector=SCIM)
    assert len(scim_jobs) == len(people)
    for job in scim_jobs:
        assert (job.state, job.attempts) == ("queued", 2)
        assert job.run_at > clock()
        assert "HTTP 503" in (job.last_error or "")
    others = {job.state for job in stack.jobs("grant") if job.connector != SCIM}
    assert others == {"done"}
    for request in requests:
        assert stack.get(f"/v1/requests/{request['id']}")["state"] == "delivering"
    stack.sweep()
    assert {job.attempts for job in stack.jobs("grant", connector=SCIM)} == {2}  # not due yet

    scim_server.outage.down = False
    assert stack.scim_members(scim_group) == []  # nothing reached it while it was down
    clock.advance(seconds=11)  # past the second backoff (at most 10 s)
    stack.sweep()

    assert Counter(stack.scim_members(scim_group)) == {person.scim_id: 1 for person in people}
    expected_dns = {BYSTANDER_DN: 1} | {person.dn: 1 for person in people}
    assert Counter(stack.ldap_members(ldap_group)) == expected_dns
    assert stack.webhook.members[APP] == {person.user_id for person in people}
    jobs = stack.jobs("grant")
    assert len(jobs) == 3 * len(people)
    assert {job.state for job in jobs} == {"done"}
    assert {job.attempts for job in jobs if job.connector == SCIM} == {3}
    assert stack.jobs("grant", "revoke", "notify", state="failed") == []
    for request in requests:
        assert stack.get(f"/v1/requests/{request['id']}")["state"] == "delivered"


def test_a_restarted_worker_takes_a_killed_workers_jobs_without_waiting_out_the_lease(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, tmp_path: Path
):
    """With a 10-minute job lease, a worker SIGKILLed mid-batch and restarted on the same
    machine still delivers every grant within a minute: the new worker sees the dead
    process's claims and queues them again at once. Each person ends up granted exactly
    once in slapd, the SCIM group and the app, and no job is run twice but the reclaimed."""
    clock = Clock(datetime.now(UTC))
    stack, ldap_group, scim_group = payroll(make_stack, slapd, scim_server, clock)
    stack.webhook.delay = 0.05
    people = [stack.add_person(f"q{number:02}") for number in range(PEOPLE)]
    for person in people:
        stack.request("payroll", person)

    reclaimed = kill_mid_batch_then_recover(
        stack, "grant", tmp_path / "long-lease-worker.log", lease="PT10M"
    )

    assert reclaimed
    expected_dns = {BYSTANDER_DN: 1} | {person.dn: 1 for person in people}
    assert Counter(stack.ldap_members(ldap_group)) == expected_dns
    assert Counter(stack.scim_members(scim_group)) == {person.scim_id: 1 for person in people}
    granted = Counter(event["user"]["id"] for event in stack.events("access.granted"))
    assert granted == {person.user_id: 1 for person in people}
    attempts = {job.id: job.attempts for job in stack.jobs("grant")}
    assert attempts == {id: 2 if id in reclaimed else 1 for id in attempts}
    assert stack.jobs("grant", "revoke", "notify", state="failed") == []
