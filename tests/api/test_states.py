"""An illegal state change asked over HTTP is a 409 naming the state, never a 500."""

from __future__ import annotations


def test_removing_an_ended_assignment_is_a_conflict_naming_its_state(client, token, people):
    """The transition table refuses a second removal: 409 with `errors.state`."""
    ada = token("ada")
    assert client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=ada).json
    assignment = client.get("/v1/assignments", headers=ada).json[0]
    url = f"/v1/assignments/{assignment['id']}"
    assert client.delete(url, headers=ada).json["state"] == "removed"
    again = client.delete(url, headers=ada)
    assert again.status_code == 409
    assert again.json["errors"] == {"state": ["assignment is removed; it cannot become expiring"]}
    assert client.get(url, headers=ada).json["state"] == "removed"
