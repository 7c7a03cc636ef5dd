"""Leavers: deleting or disabling a user ends their access, requests and pending approvals."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from policyd.api.context import components
from policyd.cli import main
from policyd.rules import load_bundle
from tests.conftest import POLICIES
from tests.connectors.ldap_server import Slapd, slapd
from tests.connectors.scim_server import ScimServer, scim_server
from tests.connectors.webhook_server import webhook_server
from tests.e2e_support import (
    BYSTANDER_DN,
    MakeStack,
    ldap_resource,
    make_stack,
    new_ldap_group,
    package_file,
    scim_resource,
    webhook_resource,
)

__all__ = ["make_stack", "scim_server", "slapd", "webhook_server"]  # fixtures for pytest
APP = "app:payroll"

SHARED = """apiVersion: policyd/v1
package:
  id: scope-a-extra
  displayName: Extra
  resources:
    - {connector: directory, resource: "group:Group.ScopeA.Readers"}
    - {connector: directory, resource: "group:Extra.Only"}
  lifetime: {duration: P1D}
  rules:
    - {id: all, then: {decision: auto_approve}}
"""


def file(client, headers, package, **extra):
    return client.post("/v1/requests", json={"package": package, **extra}, headers=headers)


def members(client, admin, group):
    response = client.get(f"/v1/groups/{group}/members", headers=admin)
    return [m["user_id"] for m in response.json] if response.status_code == 200 else []


def audit(client, admin, **query):
    args = "&".join(f"{k}={v}" for k, v in query.items())
    return client.get(f"/v1/audit?page_size=100&{args}", headers=admin).json


def test_deleting_a_user_removes_their_live_access_through_the_connector(
    client, token, admin, people
):
    """Ada's auto-approved Scope A access ends when she is deleted: her assignment is
    removed and the connector revoked the group membership it granted."""
    request = file(client, token("ada"), "scope-a-readers").json
    assert "ada" in members(client, admin, "Group.ScopeA.Readers")

    assert client.delete("/v1/users/ada", headers=admin).status_code == 204

    assert "ada" not in members(client, admin, "Group.ScopeA.Readers")
    (assignment,) = client.get("/v1/assignments?subject=ada", headers=admin).json
    assert (assignment["request_id"], assignment["state"]) == (request["id"], "removed")
    assert assignment["removed_at"] is not None


def test_a_deleted_user_is_a_tombstone_whose_history_stays(client, token, admin, people):
    """After deletion the user is gone from the directory (404, not listed, no decisions),
    while their requests, assignments and audit trail remain readable."""
    request = file(client, token("ada"), "scope-a-readers").json
    client.delete("/v1/users/ada", headers=admin)

    assert client.get("/v1/users/ada", headers=admin).status_code == 404
    assert "ada" not in [u["id"] for u in client.get("/v1/users", headers=admin).json]
    asked = client.post(
        "/v1/decisions",
        json={"package": "scope-a-readers", "subject": {"id": "ada"}},
        headers=token("portal", "app"),
    )
    assert asked.status_code == 404
    assert client.get(f"/v1/requests/{request['id']}", headers=admin).json["subject_id"] == "ada"
    assert client.delete("/v1/users/ada", headers=admin).status_code == 404


def test_a_resource_shared_by_two_ending_assignments_is_revoked_once(
    client, token, admin, people, app
):
    """Ada holds two packages that both grant Group.ScopeA.Readers: deleting her queues one
    revoke for the shared group and one for the other, and removes both memberships."""
    files = {"extra.yaml": SHARED, **load_bundle(POLICIES).files}
    assert client.post("/v1/policy-versions", json={"files": files}, headers=admin).status_code
    ada = token("ada")
    file(client, ada, "scope-a-readers")
    file(client, ada, "scope-a-extra")

    client.delete("/v1/users/ada", headers=admin)

    revokes = client.get("/v1/jobs?kind=revoke&page_size=100", headers=admin).json
    assert sorted(job["resource"] for job in revokes) == [
        "group:Extra.Only",
        "group:Group.ScopeA.Readers",
    ]
    assert {job["state"] for job in revokes} == {"done"}
    assert "ada" not in members(client, admin, "Extra.Only")


def test_a_deleted_id_put_again_is_a_new_user_without_the_old_access(client, token, admin, people):
    """PUT on a deleted id creates a new user: they hold nothing and may request afresh."""
    file(client, token("ada"), "scope-a-readers")
    client.delete("/v1/users/ada", headers=admin)

    again = client.put("/v1/users/ada", json={"email": "ada@contoso.com"}, headers=admin)

    assert again.status_code == 200
    assert client.get("/v1/users/ada", headers=admin).status_code == 200
    (created, *_) = audit(client, admin, action="directory.user_created", object_id="ada")
    assert created["before"] is None
    assert members(client, admin, "Group.ScopeA.Readers") == []


def test_a_user_disabled_by_a_directory_import_loses_access_and_cannot_request(
    app, client, token, admin, people, runner, tmp_path: Path, database_url
):
    """`policyd directory import` with account_enabled false disables ada: her access is
    removed, she stays in the directory, and a new request for her is a 409."""
    file(client, token("ada"), "scope-a-readers")
    leavers = tmp_path / "leavers.json"
    leavers.write_text(
        '{"users": [{"id": "ada", "email": "ada@contoso.com", "department": "Engineering",'
        ' "account_enabled": false}]}',
        encoding="utf-8",
    )

    result = runner.invoke(
        main, ["directory", "import", str(leavers), "--database-url", database_url]
    )

    assert result.exit_code == 0, result.output
    assert "1 disabled" in result.output
    # The CLI queued the revokes at the real time; the app's clock is frozen earlier.
    components(app).worker.run_jobs(now=datetime.now(UTC), limit=100)
    assert "ada" not in members(client, admin, "Group.ScopeA.Readers")
    assert client.get("/v1/users/ada", headers=admin).status_code == 200
    (assignment,) = client.get("/v1/assignments?subject=ada", headers=admin).json
    assert assignment["state"] == "removed"
    refused = file(client, token("ada"), "scope-a-readers")
    assert refused.status_code == 409 and "subject.id" in refused.json["errors"]
    (disabled,) = audit(client, admin, action="directory.user_disabled")
    assert disabled["object_id"] == "ada" and disabled["after"]["assignments_ended"] == 1


def test_an_import_enabling_a_disabled_user_lets_them_request_again(
    client, token, admin, people, runner, tmp_path: Path, database_url
):
    """A later import without account_enabled false enables the user again."""
    path = tmp_path / "people.json"
    path.write_text('{"users": [{"id": "bob", "account_enabled": false}]}', encoding="utf-8")
    runner.invoke(main, ["directory", "import", str(path), "--database-url", database_url])
    assert file(client, token("bob"), "scope-a-readers").status_code == 409

    path.write_text('{"users": [{"id": "bob"}]}', encoding="utf-8")
    result = runner.invoke(main, ["directory", "import", str(path), "--database-url", database_url])

    assert "1 enabled" in result.output, result.output
    assert file(client, token("bob"), "scope-a-readers").status_code == 201


def test_reconcile_finds_nothing_left_behind_after_a_deletion(
    app, client, token, admin, people, clock
):
    """After ada's deletion no connector still holds access for her: reconcile reports no
    difference (before the tombstone, her access could not even be found to mend)."""
    from policyd.services.reconcile import reconcile

    file(client, token("ada"), "scope-a-readers")
    client.delete("/v1/users/ada", headers=admin)

    with components(app).database.session() as session:
        report = reconcile(session, components(app).connectors, now=clock())
    assert [
        (d.resource, d.missing, d.unauthorised) for d in report if d.missing or d.unauthorised
    ] == []


def test_deleting_a_user_removes_their_access_from_slapd_scim_and_the_webhook_app(
    make_stack: MakeStack, slapd: Slapd, scim_server: ScimServer, clock
):
    """Two people hold payroll in a real slapd group, a SCIM group and a webhook app; the
    one deleted is removed from all three (the other stays), told to the app as
    access.removed, and their assignment ends as removed."""
    ldap_group = new_ldap_group(slapd)
    scim_group = scim_server.create_group("Payroll")
    resources = [ldap_resource(ldap_group), scim_resource("Payroll"), webhook_resource(APP)]
    stack = make_stack({"payroll.yaml": package_file("payroll", resources)}, clock=clock)
    leaver, stayer = stack.add_person("leaver"), stack.add_person("stayer")
    request = stack.request("payroll", leaver)
    stack.request("payroll", stayer)
    stack.sweep()
    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, leaver.dn, stayer.dn}
    assert set(stack.scim_members(scim_group)) == {leaver.scim_id, stayer.scim_id}
    assert stack.webhook.members[APP] == {leaver.user_id, stayer.user_id}

    response = stack.client.delete(f"/v1/users/{leaver.user_id}", headers=stack.admin)
    assert response.status_code == 204
    stack.sweep()

    assert set(stack.ldap_members(ldap_group)) == {BYSTANDER_DN, stayer.dn}
    assert stack.scim_members(scim_group) == [stayer.scim_id]
    assert stack.webhook.members[APP] == {stayer.user_id}
    removed = [event["user"]["id"] for event in stack.events("access.removed")]
    assert removed == [leaver.user_id]
    assert stack.assignment(request)["state"] == "removed"
    assert stack.jobs("grant", "revoke", state="failed") == []


def test_a_csv_import_reads_account_enabled_false_as_a_leaver():
    """The CSV column account_enabled takes false; an empty cell leaves the user enabled."""
    from policyd.services.directory_import import parse_csv_directory

    text = "id,account_enabled\nada,false\nbob,\n"
    parsed = parse_csv_directory(text, "people.csv")

    assert parsed.problems == []
    assert [(e.data["id"], e.data["account_enabled"]) for e in parsed.users] == [
        ("ada", False),
        ("bob", True),
    ]


def test_a_deleted_users_api_tokens_stop_working(client, token, admin, people):
    """Bob's token answers 401 once he is deleted (a token already checked does so within
    POLICYD_TOKEN_CACHE_SECONDS); the audit record counts it."""
    bob = token("bob")

    client.delete("/v1/users/bob", headers=admin)

    assert client.get("/v1/assignments", headers=bob).status_code == 401
    (deleted,) = audit(client, admin, action="directory.user_deleted")
    assert deleted["after"]["tokens_revoked"] == 1


def test_a_request_racing_the_deletion_of_its_subject_never_leaves_live_access(
    app, client, token, admin, people, clock
):
    """Eight eligible users are each deleted while a request of theirs is being filed, at
    the same moment: whichever comes first, none of them is left with live access or in
    the group."""
    users = [f"racer{i}" for i in range(8)]
    for user in users:
        client.put(f"/v1/users/{user}", json={"email": f"{user}@contoso.com"}, headers=admin)
        client.put(f"/v1/groups/Group.ScopeA.Readers.Eligible/members/{user}", headers=admin)
    headers = {user: token(user) for user in users}
    answers: dict[tuple[str, str], int] = {}

    def race(user: str, what: str, barrier: threading.Barrier) -> None:
        with app.test_client() as own:
            barrier.wait()
            if what == "delete":
                answers[user, what] = own.delete(f"/v1/users/{user}", headers=admin).status_code
            else:
                body = {"package": "scope-a-readers"}
                response = own.post("/v1/requests", json=body, headers=headers[user])
                answers[user, what] = response.status_code

    for user in users:
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=race, args=(user, w, barrier)) for w in ("delete", "file")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # A grant that was running when its access ended finishes first; a worker's sweep
    # then runs the revoke that waited for it.
    components(app).worker.sweep(now=clock())
    assert {answers[user, "delete"] for user in users} == {204}
    assert {answers[user, "file"] for user in users} <= {201, 401, 404, 409}
    for user in users:
        held = client.get(f"/v1/assignments?subject={user}", headers=admin).json
        assert {a["state"] for a in held} <= {"removed"}, (user, held)
    assert set(members(client, admin, "Group.ScopeA.Readers")).isdisjoint(users)


def test_disabling_a_user_over_the_api_ends_their_access_and_enabling_lets_them_request(
    client, token, admin, people
):
    """POST /v1/users/ada/disable removes her live access through the connector and refuses
    her new requests while she stays in the directory; a second disable is a 409; enable lets
    her request again without giving the old access back."""
    file(client, token("ada"), "scope-a-readers")
    assert "ada" in members(client, admin, "Group.ScopeA.Readers")

    assert client.post("/v1/users/ada/disable", headers=admin).status_code == 204

    assert "ada" not in members(client, admin, "Group.ScopeA.Readers")
    assert client.get("/v1/users/ada", headers=admin).status_code == 200
    (assignment,) = client.get("/v1/assignments?subject=ada", headers=admin).json
    assert assignment["state"] == "removed"
    assert file(client, token("ada"), "scope-a-readers").status_code == 409
    again = client.post("/v1/users/ada/disable", headers=admin)
    assert again.status_code == 409 and "id" in again.json["errors"]

    assert client.post("/v1/users/ada/enable", headers=admin).status_code == 204
    assert "ada" not in members(client, admin, "Group.ScopeA.Readers")
    assert file(client, token("ada"), "scope-a-readers").status_code == 201
    assert client.post("/v1/users/ada/enable", headers=admin).status_code == 409
    assert client.post("/v1/users/nobody/disable", headers=admin).status_code == 404
