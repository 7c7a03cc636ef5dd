"""The services move requests, assignments and jobs only as domain.py's transition tables allow:
random sequences of filing, approving, canceling, extending, removing, delivering (with a
connector that fails on demand), retrying, leaving and time passing never reach an illegal
move, and one attempted directly is refused with IllegalTransitionError."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from policyd.connectors import registry
from policyd.connectors.base import ConnectorError
from policyd.connectors.config import Connectors, InstanceConfig
from policyd.domain import (
    TRANSITIONS,
    AssignmentState,
    IllegalTransitionError,
    JobState,
    RequestOptions,
    RequestState,
    allowed,
)
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignment_delivery import changed
from policyd.services.assignments import LIVE_STATES, AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, ServiceError
from policyd.services.jobs import JobService
from policyd.services.leavers import LeaverService
from policyd.services.memberships import DirectoryMemberships
from policyd.services.requests import RequestService
from policyd.store import Database
from policyd.store.models import AccessRequest, Assignment, AuditRecord, Job
from policyd.worker import Worker
from tests.conftest import empty_tables, rule_file

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ADMIN = Actor("root", Role.ADMIN)
PEOPLE = ("pat", "sam")
APPROVERS = ("olivia", "quinn", "rex")
MODELS = {AccessRequest: RequestState, Assignment: AssignmentState, Job: JobState}
AUDITED = {"request": RequestState, "assignment": AssignmentState}


class Flaky:
    """A connector that works, fails retryably or refuses (not retryable), as told."""

    def __init__(self, context):
        self.name = context.name
        self.mode = "up"
        self.holders: set[str] = set()

    def _check(self) -> None:
        if self.mode != "up":
            raise ConnectorError(f"flaky is {self.mode}", retryable=self.mode == "down")

    def grant(self, target):
        self._check()
        self.holders.add(target.user_id)

    def revoke(self, target):
        self._check()
        self.holders.discard(target.user_id)

    def members(self, resource):
        return set(self.holders)

    def health(self):
        self._check()


def bundle():
    """`auto` (approved at once, extendable), `staged` (two stages with timeouts, the first
    escalating to rex) and `never` (denied); `auto` and `staged` grant through `flaky`."""
    staged = """
        - approvers: ["user:olivia"]
          timeout: PT4H
          escalateTo: ["user:rex"]
        - approvers: ["user:quinn"]
          timeout: PT4H"""
    texts = {
        "auto.yaml": rule_file(
            """
            apiVersion: policyd/v1
            package:
              id: auto
              displayName: Auto
              resources:
                - {connector: directory, resource: "group:Auto", role: member}
                - {connector: flaky, resource: "auto", role: member}
              rules:
                - id: anyone
                  then: {decision: auto_approve, lifetime: {duration: PT8H, extendable: true}}
            """
        ),
        "staged.yaml": rule_file(
            """
            apiVersion: policyd/v1
            package:
              id: staged
              displayName: Staged
              resources:
                - {connector: flaky, resource: "staged", role: member}
              rules:
                - id: approved
                  then:
                    decision: require_approval
                    approval:
                      stages:"""
            + staged.replace("\n", "\n" + " " * 16)
            + """
                    lifetime: {duration: P1D}
            """
        ),
        "never.yaml": rule_file(
            """
            apiVersion: policyd/v1
            package:
              id: never
              displayName: Never
              resources:
                - {connector: directory, resource: "group:Never", role: member}
              rules:
                - id: nobody
                  then: {decision: deny, reason: nobody has this}
            """
        ),
    }
    return load_texts(texts)


def closure(kind: type) -> dict:
    """Each state -> the states reachable from it in any number of moves (itself included)."""
    reach = {}
    for state in kind:
        seen, todo = {state}, [state]
        while todo:
            for following in TRANSITIONS[kind][todo.pop()]:
                if following not in seen:
                    seen.add(following)
                    todo.append(following)
        reach[state] = seen
    return reach


REACH = {kind: closure(kind) for kind in MODELS.values()}


class Lifecycle(RuleBasedStateMachine):
    """Drives the services; after every step checks each object's move against the tables."""

    store: Database
    runtime: PolicyRuntime
    connectors: Connectors

    def __init__(self):
        super().__init__()
        empty_tables(self.store)
        self.now = START
        self.flaky = self.connectors.get("flaky")
        self.flaky.mode, self.flaky.holders = "up", set()
        self.worker = Worker(self.store.session, self.connectors, self.runtime)
        with self.store.session() as session:
            directory = DirectoryService(session)
            for user in (*PEOPLE, *APPROVERS):
                directory.put_user(SYSTEM, user, {}, now=self.now)
            session.commit()
        self.seen: dict[tuple[type, str], str] = {}
        self.audited = 0

    def ids(self, model) -> list[str]:
        with self.store.session() as session:
            return list(session.scalars(select(model.id).order_by(model.id)))

    def pick(self, model, index: int) -> str | None:
        ids = self.ids(model)
        return ids[index % len(ids)] if ids else None

    def attempt(self, operation, refusals: tuple[type[Exception], ...] = (ServiceError,)):
        """Run one service call; a refusal (409, 403, 404) is an answer, and is returned.
        Anything else, an IllegalTransitionError included, fails the test: the services
        never try a move the table forbids unless asked for one."""
        with self.store.session() as session:
            try:
                operation(session)
            except refusals as err:
                session.rollback()
                return err
        return None

    @initialize(
        package=st.sampled_from(["auto", "staged"]), mode=st.sampled_from(["up", "refusing"])
    )
    def first(self, package, mode):
        """Every run starts with a request of pat's, approved (by both stages of `staged`)
        and delivered or refused, so that later steps have something to move."""
        self.file("pat", package)
        if package == "staged":
            self.decide(0, "stage's own", "approve")
            self.decide(0, "stage's own", "approve")
        self.deliver(mode)

    @rule(person=st.sampled_from(PEOPLE), package=st.sampled_from(["auto", "staged", "never"]))
    def file(self, person, package):
        self.attempt(
            lambda session: RequestService(session, self.runtime).create(
                Actor(person, Role.USER), package, person, None, RequestOptions(), now=self.now
            )
        )

    @rule(
        index=st.integers(0, 20),
        approver=st.sampled_from(("stage's own", *APPROVERS, *PEOPLE)),
        verdict=st.sampled_from(["approve", "approve", "deny"]),
    )
    def decide(self, index, approver, verdict):
        if (request_id := self.pick(AccessRequest, index)) is None:
            return

        def decide(session):
            request = session.get(AccessRequest, request_id)
            who = approver
            if who == "stage's own":  # mostly someone the stage waits for, if it waits
                stage = request.stages[(request.stage or 1) - 1] if request.stages else {}
                who = (stage.get("approvers") or ["olivia"])[0]
            RequestService(session, self.runtime).decide_stage(
                Actor(who, Role.USER), request_id, verdict, comment=None, now=self.now
            )

        self.attempt(decide)

    @rule(index=st.integers(0, 20))
    def cancel(self, index):
        if (request_id := self.pick(AccessRequest, index)) is None:
            return

        def cancel(session):
            subject = session.get(AccessRequest, request_id).subject_id
            RequestService(session, self.runtime).cancel(
                Actor(subject, Role.USER), request_id, now=self.now
            )

        self.attempt(cancel)

    @rule(index=st.integers(0, 20))
    def extend(self, index):
        if (assignment_id := self.pick(Assignment, index)) is None:
            return
        self.attempt(
            lambda session: RequestService(session, self.runtime).extend(
                ADMIN, assignment_id, RequestOptions(), now=self.now
            )
        )

    @rule(index=st.integers(0, 20))
    def remove(self, index):
        if (assignment_id := self.pick(Assignment, index)) is None:
            return
        with self.store.session() as session:
            state = session.get(Assignment, assignment_id).state
        refused = self.attempt(
            lambda session: AssignmentService(session, self.runtime).remove(
                ADMIN, assignment_id, now=self.now
            ),
            (ConflictError,),
        )
        # Removal is refused by the table, and only for access that is ending or ended.
        assert (refused is not None) == (state not in LIVE_STATES), (state, refused)

    @rule(index=st.integers(0, 40))
    def retry(self, index):
        if (job_id := self.pick(Job, index)) is not None:
            self.retry_one(job_id)

    def retry_one(self, job_id: str) -> None:
        def retry(session):
            JobService(session).retry(ADMIN, job_id, now=self.now)
            session.commit()

        self.attempt(retry)

    @rule()
    def retry_failed(self):
        """An operator retries every failed job, with the connector working again."""
        self.flaky.mode = "up"
        with self.store.session() as session:
            failed = session.scalars(select(Job.id).where(Job.state == JobState.FAILED)).all()
        for job_id in failed:
            self.retry_one(job_id)
        self.worker.run_jobs(now=self.now, limit=100)

    @rule(person=st.sampled_from((*PEOPLE, *APPROVERS)))
    def leave_or_return(self, person):
        def toggle(session):
            leavers = LeaverService(session, self.runtime)
            try:
                leavers.disable_user(ADMIN, person, now=self.now)
            except ServiceError:
                session.rollback()
                leavers.enable_user(ADMIN, person, now=self.now)

        self.attempt(toggle)

    @rule(mode=st.sampled_from(["up", "down", "refusing"]))
    def deliver(self, mode):
        """The worker runs the due jobs, with the connector working, down or refusing."""
        self.flaky.mode = mode
        self.worker.run_jobs(now=self.now, limit=100)

    @rule(hours=st.integers(1, 12))
    def time_passes(self, hours):
        self.now += timedelta(hours=hours)
        self.worker.sweep(now=self.now)

    @rule(
        index=st.integers(0, 40),
        state=st.sampled_from([*RequestState, *AssignmentState, JobState.DONE]),
    )
    def force(self, index, state):
        """A move asked of a service directly: the table's are made, any other one is
        refused with IllegalTransitionError (and nothing of it is kept)."""
        model = {RequestState: AccessRequest, AssignmentState: Assignment, JobState: Job}
        if (object_id := self.pick(model[type(state)], index)) is None:
            return
        with self.store.session() as session:
            current = session.get(model[type(state)], object_id).state
            legal = current == state if type(state) is AssignmentState else False
            if legal or allowed(current, state):
                self.move(session, object_id, state)
            else:
                with pytest.raises(IllegalTransitionError):
                    self.move(session, object_id, state)
            session.rollback()

    def move(self, session, object_id: str, state) -> None:
        """The service's own move of one object to `state` (the caller rolls it back)."""
        if isinstance(state, RequestState):
            request = session.get(AccessRequest, object_id)
            RequestService(session, self.runtime)._move(SYSTEM, request, state, self.now)
            assert request.state == state
        elif isinstance(state, AssignmentState):
            changed(session.get(Assignment, object_id), state)
        else:
            assert JobService(session).finish(object_id, now=self.now).state == state

    @invariant()
    def every_move_is_in_the_table(self):
        """Between two steps each object's state is reachable from its last one, and each
        audited move of a request or assignment is one the table allows."""
        with self.store.session() as session:
            for model, kind in MODELS.items():
                for object_id, state in session.execute(select(model.id, model.state)):
                    now = kind(state)
                    before = self.seen.get((model, object_id))
                    if before is not None:
                        assert now in REACH[kind][kind(before)], (model, before, now)
                    self.seen[(model, object_id)] = now
            records = session.scalars(
                select(AuditRecord)
                .where(AuditRecord.id > self.audited)
                .where(AuditRecord.object_type.in_(AUDITED))
            ).all()
            for record in records:
                kind = AUDITED[record.object_type]
                old = (record.before or {}).get("state")
                new = (record.after or {}).get("state")
                if old is not None and new is not None and old != new:
                    assert allowed(old, kind(new)), (record.action, old, new)
            self.audited = session.scalar(select(AuditRecord.id).order_by(AuditRecord.id.desc()))
            self.audited = self.audited or 0


@pytest.fixture
def lifecycle(store: Database) -> Iterator[type[Lifecycle]]:
    registry.register("flaky", Flaky)
    runtime = PolicyRuntime(bundle())
    instances = {
        "directory": InstanceConfig("directory", "directory"),
        "flaky": InstanceConfig("flaky", "flaky"),
    }
    connectors = Connectors(instances, DirectoryMemberships(store.session))
    Lifecycle.store, Lifecycle.runtime, Lifecycle.connectors = store, runtime, connectors
    yield Lifecycle
    connectors.close()
    runtime.close()
    registry.reset()


def test_no_sequence_of_service_calls_makes_an_illegal_move(lifecycle):
    """Random operation sequences keep every request, assignment and job within the tables."""
    # The moves do not depend on the database; PostgreSQL, slower per step, runs fewer.
    examples = 40 if lifecycle.store.url.startswith("sqlite") else 12
    run_state_machine_as_test(
        lifecycle,
        settings=settings(
            max_examples=examples,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
