"""An illegal state change asked over HTTP is a 409 naming the state, never a 500."""

from __future__ import annotations

from policyd.domain import AssignmentState, transition
from policyd.services.assignments import AssignmentService


def test_removing_an_ended_assignment_is_a_conflict_naming_its_state(client, token, people):
    """The transition table refuses a second removal: 409 with `errors.state`."""
    ada = token("ada")
    assert client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=ada).json
    assignment = client.get("/v1/assignments", headers=ada).json[0]
    url = f"/v1/assignments/{assignment['id']}"
    assert client.delete(url, headers=ada).json["state"] == "removed"
    again = client.delete(url, headers=ada)
    assert again.status_code == 409
    assert again.json["errors"] == {"state": ["assignment is already removed"]}
    assert client.get(url, headers=ada).json["state"] == "removed"


def test_an_illegal_transition_raised_in_a_service_is_a_409_naming_the_state(
    client, token, people, monkeypatch
):
    """Should a service attempt a move the table forbids, the API answers 409, not 500."""

    def attempt(self, actor, assignment_id, *, now):
        return transition(AssignmentState.REMOVED, AssignmentState.ACTIVE)

    monkeypatch.setattr(AssignmentService, "remove", attempt)
    refused = client.delete("/v1/assignments/any", headers=token("ada"))
    assert refused.status_code == 409
    assert refused.json["errors"] == {"state": ["assignment is removed; it cannot become active"]}


def test_moves_a_request_cannot_make_are_conflicts_naming_its_state(client, token, admin, people):
    """Canceling, approving or denying a request that is done waiting: 409 with `errors.state`."""
    ada = token("ada")
    request = client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=ada).json
    assert request["state"] == "delivered"
    url = f"/v1/requests/{request['id']}"
    for verb, who in (("cancel", ada), ("approve", admin), ("deny", admin)):
        refused = client.post(f"{url}/{verb}", json={}, headers=who)
        assert refused.status_code == 409, (verb, refused.json)
        assert list(refused.json["errors"]) == ["state"], verb
    assert client.get(url, headers=ada).json["state"] == "delivered"
