"""Replay: past decisions decided again under a candidate; only flipped ones are reported."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

from policyd.api.context import components
from policyd.cli import main
from policyd.rules import Policy, load_bundle
from policyd.services.replay import ReplayReport, ReplayService
from tests.conftest import POLICIES

CONTRACTOR_DENY = """
    - id: no-contractors
      when: {subject.employeeType: contractor}
      then: {decision: deny, reason: Contractors do not read Scope A}
"""


def candidate(tmp_path):
    """The examples with the JIT package at 4 hours instead of 8, and a deny rule added."""
    folder = tmp_path / "candidate"
    shutil.copytree(POLICIES, folder)
    path = folder / "scope-a-readers.yaml"
    text = path.read_text().replace("duration: PT8H, max: PT8H", "duration: PT4H, max: PT4H")
    path.write_text(text + CONTRACTOR_DENY)
    return folder


def decide(client, token, subject_id: str, package: str = "scope-a-readers") -> dict:
    body = {"package": package, "subject": {"id": subject_id}}
    response = client.post("/v1/decisions", json=body, headers=token)
    assert response.status_code == 200, response.json
    return response.json


def people(client, admin) -> None:
    """ada (eligible), bob and carl (contractors, carl eligible), dora (employee)."""
    kinds = {"ada": "employee", "bob": "contractor", "carl": "contractor", "dora": "employee"}
    for user, kind in kinds.items():
        body = {"email": f"{user}@contoso.com", "employee_type": kind}
        assert client.put(f"/v1/users/{user}", json=body, headers=admin).status_code == 200
    client.put("/v1/groups/Group.ScopeA.Readers.Eligible", json={}, headers=admin)
    for user in ("ada", "carl"):
        client.put(f"/v1/groups/Group.ScopeA.Readers.Eligible/members/{user}", headers=admin)


def test_replay_lists_exactly_the_decisions_that_flip(app, client, admin, runner, tmp_path):
    """Under the candidate, the contractors' Scope A decisions flip to deny (bob from approval,
    carl from auto-approval); ada's, dora's and other packages' do not, though the lifetime
    changed too."""
    people(client, admin)
    ids = {
        user: decide(client, admin, user)["decision_id"] for user in ("ada", "bob", "carl", "dora")
    }
    decide(client, admin, "bob", "sales-support")
    components(app).decision_log.drain()
    url = components(app).settings.database
    result = runner.invoke(
        main,
        [
            "replay",
            "--candidate",
            str(candidate(tmp_path)),
            "--format",
            "json",
            "--database-url",
            url,
            "--exit-code",
        ],
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["examined"] == 5
    assert report["changed"] == 2
    assert report["counts"] == [
        {"package": "scope-a-readers", "from": "auto_approve", "to": "deny", "decisions": 1},
        {"package": "scope-a-readers", "from": "require_approval", "to": "deny", "decisions": 1},
    ]
    flipped = {c["decision_id"]: (c["before"], c["after"]) for c in report["changes"]}
    assert flipped == {
        ids["bob"]: (
            {"decision": "require_approval", "rule": "everyone-else"},
            {"decision": "deny", "rule": "no-contractors"},
        ),
        ids["carl"]: (
            {"decision": "auto_approve", "rule": "eligible-members"},
            {"decision": "deny", "rule": "no-contractors"},
        ),
    }


def test_replay_against_itself_changes_nothing(app, client, admin, runner):
    """The active version replayed against its own decisions flips none (text output)."""
    people(client, admin)
    for user in ("ada", "bob"):
        decide(client, admin, user)
    components(app).decision_log.drain()
    url = components(app).settings.database
    version = client.get("/v1/policy-versions", headers=admin).json[0]["id"]
    result = runner.invoke(
        main, ["replay", "--candidate", version, "--database-url", url, "--exit-code"]
    )
    assert result.exit_code == 0, result.output
    assert f"examined 2 decisions under {version} (version {version}): 0 would change" in (
        result.output
    )


def test_replay_filters_by_package_and_time(app, client, admin, clock, tmp_path):
    """--package and --since narrow what is examined."""
    people(client, admin)
    decide(client, admin, "bob")
    clock.advance(days=2)
    decide(client, admin, "carl")
    decide(client, admin, "bob", "sales-support")
    components(app).decision_log.drain()
    policy = Policy(load_bundle(candidate(tmp_path)))
    try:
        with components(app).database.session() as session:
            service = ReplayService(session)
            report = ReplayReport("candidate")
            since = clock.now - timedelta(days=1)
            changes = list(
                service.replay(policy, report, since=since, package="scope-a-readers", batch=1)
            )
    finally:
        policy.close()
    assert report.examined == 1
    assert [c.subject_id for c in changes] == ["carl"]


def test_replay_reads_in_batches_and_sees_every_row(app, client, admin, tmp_path):
    """Batches of two over seven decisions examine each exactly once."""
    people(client, admin)
    for user in ("ada", "bob", "carl", "dora", "bob", "carl", "ada"):
        decide(client, admin, user)
    components(app).decision_log.drain()
    policy = Policy(load_bundle(candidate(tmp_path)))
    seen = []
    try:
        with components(app).database.session() as session:
            report = ReplayReport("candidate")
            changes = list(
                ReplayService(session).replay(policy, report, batch=2, progress=seen.append)
            )
    finally:
        policy.close()
    assert report.examined == 7 and seen == [2, 2, 2, 1]
    # Ids are time-ordered to the millisecond; within one the order is the ids' random part.
    assert sorted(c.subject_id for c in changes) == ["bob", "bob", "carl", "carl"]
    assert len({c.decision_id for c in changes}) == 4


def test_a_decision_logged_at_exactly_since_is_examined(app, client, admin, clock, tmp_path):
    """Decision-log rows stored from the spool compare with bound times as rows stored by
    SQLAlchemy do (SQLite keeps times as text): `since` equal to a decision's moment keeps it."""
    people(client, admin)
    decide(client, admin, "bob")
    components(app).decision_log.drain()
    policy = Policy(load_bundle(candidate(tmp_path)))
    try:
        with components(app).database.session() as session:
            report = ReplayReport("candidate")
            list(ReplayService(session).replay(policy, report, since=clock.now))
    finally:
        policy.close()
    assert report.examined == 1


def test_the_api_replays_candidate_files_and_counts_the_flips(app, client, admin, tmp_path):
    """POST /v1/replay with the candidate's files answers the counts and the changes."""
    people(client, admin)
    for user in ("ada", "bob", "carl"):
        decide(client, admin, user)
    components(app).decision_log.drain()
    folder = candidate(tmp_path)
    files = {p.relative_to(folder).as_posix(): p.read_text() for p in folder.glob("*.yaml")}
    response = client.post("/v1/replay", json={"files": files, "limit": 1}, headers=admin)
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["examined"], body["changed"], len(body["changes"])) == (3, 2, 1)
    assert {c["from"] for c in body["counts"]} == {"auto_approve", "require_approval"}


def test_the_api_refuses_a_bad_candidate_and_other_roles(client, admin, token):
    """A candidate that does not load is a 422 with file:line; a user token gets 403."""
    response = client.post(
        "/v1/replay", json={"files": {"a.yaml": "apiVersion: policyd/v1\n"}}, headers=admin
    )
    assert response.status_code == 422
    assert response.json["errors"]["files"][0].startswith("a.yaml:1: ")
    both = client.post("/v1/replay", json={"version": "x", "files": {}}, headers=admin)
    assert both.status_code == 422 and "version" in both.json["errors"]
    missing = client.post("/v1/replay", json={"version": "nope"}, headers=admin)
    assert missing.status_code == 404
    user = client.post("/v1/replay", json={"version": "nope"}, headers=token("ada"))
    assert user.status_code == 403


def test_a_logged_subject_reads_back_as_it_was_decided():
    """The decision log's subject view turns back into the same Subject."""
    from policyd.domain import Subject, UserType
    from policyd.services.decisions import subject_from_view, subject_view

    subject = Subject(
        id="ada",
        email="ada@contoso.com",
        type=UserType.GUEST,
        groups=frozenset({"g1", "g2"}),
        manager="bob",
        organization="fabrikam",
        packages=frozenset({"p"}),
        department="Sales",
        job_title="Clerk",
        employee_type="contractor",
        attributes={"costCenter": "42", "level": 3},
    )
    assert subject_from_view(subject_view(subject)) == subject
