"""The lifecycle states and their transition tables in domain.py."""

from __future__ import annotations

import itertools
import re

import pytest

from policyd.domain import (
    ASSIGNMENT_TRANSITIONS,
    JOB_TRANSITIONS,
    ORGANIZATION_TRANSITIONS,
    PUBLICATION_TRANSITIONS,
    REQUEST_TRANSITIONS,
    TRANSITIONS,
    AssignmentState,
    IllegalTransitionError,
    JobState,
    OrganizationState,
    PublicationState,
    RequestState,
    allowed,
    transition,
)
from tests.conftest import ROOT

# Where each kind of object starts, and the states it ends in.
START = {
    RequestState: RequestState.SUBMITTED,
    AssignmentState: AssignmentState.DELIVERING,
    JobState: JobState.QUEUED,
    OrganizationState: OrganizationState.PROPOSED,
    PublicationState: PublicationState.QUEUED,
}
TERMINAL = {
    RequestState: {
        RequestState.DELIVERED,
        RequestState.DENIED,
        RequestState.CANCELED,
        RequestState.EXPIRED,
    },
    AssignmentState: {AssignmentState.REMOVED},
    JobState: {JobState.DONE},
    OrganizationState: {OrganizationState.REMOVED},
    PublicationState: {PublicationState.ACTIVE, PublicationState.REJECTED},
}
KINDS = list(TRANSITIONS)


def reachable(kind: type, start) -> set:
    seen, todo = {start}, [start]
    while todo:
        for following in TRANSITIONS[kind][todo.pop()]:
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_every_state_has_a_row_of_its_own_kind(kind):
    """The table names every state of the enum, and only states of that enum."""
    table = TRANSITIONS[kind]
    assert set(table) == set(kind)
    assert all(isinstance(target, kind) for targets in table.values() for target in targets)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_every_state_is_reachable_from_the_start(kind):
    """No state is dead letter: each is reached from where the object starts."""
    assert reachable(kind, START[kind]) == set(kind)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_only_terminal_states_have_no_way_out_and_every_state_can_end(kind):
    """The states with no move are exactly the terminal ones, and each state reaches one."""
    table = TRANSITIONS[kind]
    assert {state for state, targets in table.items() if not targets} == TERMINAL[kind]
    for state in kind:
        assert reachable(kind, state) & TERMINAL[kind], f"{state} never ends"


def test_the_named_tables_are_the_ones_transition_checks():
    """REQUEST_, ASSIGNMENT_, JOB_, ORGANIZATION_ and PUBLICATION_TRANSITIONS are what
    `transition` consults."""
    assert {
        RequestState: REQUEST_TRANSITIONS,
        AssignmentState: ASSIGNMENT_TRANSITIONS,
        JobState: JOB_TRANSITIONS,
        OrganizationState: ORGANIZATION_TRANSITIONS,
        PublicationState: PUBLICATION_TRANSITIONS,
    } == TRANSITIONS


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__name__)
def test_transition_allows_exactly_the_pairs_of_the_table(kind):
    """Every (from, to) pair: the table's are returned, every other one raises, naming both."""
    for current, new in itertools.product(kind, kind):
        if new in TRANSITIONS[kind][current]:
            assert transition(current.value, new) is new
            assert allowed(current.value, new)
            continue
        assert not allowed(current.value, new)
        with pytest.raises(IllegalTransitionError) as refused:
            transition(current.value, new)
        assert (refused.value.current, refused.value.new) == (current, new)
        assert f"is {current.value}; it cannot become {new.value}" in str(refused.value)


def test_states_are_the_strings_stored_before():
    """StrEnum members compare and hash as the strings in the database."""
    assert RequestState.PENDING_APPROVAL == "pending_approval"
    assert {"done"} == {JobState.DONE}
    assert f"request.{RequestState.DENIED}" == "request.denied"


def documented_tables() -> dict[type, dict]:
    """docs/lifecycle.md's state tables: state -> the states named in its row."""
    text = (ROOT / "docs" / "lifecycle.md").read_text(encoding="utf-8")
    found: dict[type, dict] = {}
    nouns = {
        RequestState: "request",
        AssignmentState: "assignment",
        JobState: "job",
        OrganizationState: "organization",
        PublicationState: "publication",
    }
    for kind, noun in nouns.items():
        rows = re.search(rf"\| {noun} state \| may become \|\n\|---\|---\|\n((?:\|.*\n)+)", text)
        table: dict = {}
        for row in rows.group(1).splitlines():
            states, targets = row.strip("|").split("|")
            for state in re.findall(r"`(\w+)`", states):
                table[kind(state)] = frozenset(kind(t) for t in re.findall(r"`(\w+)`", targets))
        found[kind] = table
    return found


def test_the_lifecycle_page_shows_the_tables():
    """docs/lifecycle.md lists exactly the moves of each table."""
    assert documented_tables() == TRANSITIONS
