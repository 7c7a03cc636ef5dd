"""Reconciliation against the directory connector: report drift, mend it, never re-grant."""

from __future__ import annotations

from sqlalchemy import select, update

from policyd.api.context import components
from policyd.connectors.directory import DirectoryConnector
from policyd.services.assignment_removal import REVOKE_ATTEMPTS
from policyd.services.reconcile import reconcile
from policyd.store.models import Assignment, Job

GROUP = "Group.ScopeA.Readers"


def drift(app, clock, fix=False):
    with components(app).database.session() as session:
        report = reconcile(
            session, components(app).connectors, now=clock(), only="directory", fix=fix
        )
    mine = [d for d in report if d.resource == f"group:{GROUP}"]
    return (sorted(mine[0].missing), sorted(mine[0].unauthorised)) if mine else ([], [])


def members(client, admin):
    return sorted(
        m["user_id"] for m in client.get(f"/v1/groups/{GROUP}/members", headers=admin).json
    )


def test_drift_is_reported_then_mended(app, client, admin, token, people, clock):
    """A member added by hand is unauthorised, one removed by hand is missing; --fix mends."""
    client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=token("ada"))
    assert members(client, admin) == ["ada"]
    client.delete(f"/v1/groups/{GROUP}/members/ada", headers=admin)
    client.put(f"/v1/groups/{GROUP}/members/bob", headers=admin)
    assert drift(app, clock) == (["ada"], ["bob"])
    assert drift(app, clock, fix=True) == (["ada"], ["bob"])
    components(app).worker.run_jobs(now=clock())
    assert members(client, admin) == ["ada"]
    assert drift(app, clock) == ([], [])


def test_expired_access_is_never_granted_again(app, client, admin, token, people, clock):
    """After expiry the person is neither missing nor re-added, even if the revoke was undone."""
    client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=token("ada"))
    clock.advance(hours=9)
    components(app).worker.sweep(now=clock())
    assert members(client, admin) == []
    assert drift(app, clock) == ([], [])
    client.put(f"/v1/groups/{GROUP}/members/ada", headers=admin)  # someone puts it back
    assert drift(app, clock, fix=True) == ([], ["ada"])
    components(app).worker.run_jobs(now=clock())
    assert members(client, admin) == []


def test_access_on_its_way_is_neither_missing_nor_unauthorised(
    app, client, admin, token, people, clock
):
    """A grant not yet done is not missing; a member whose revoke is queued is not unauthorised."""
    client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=token("ada"))
    with components(app).database.session() as session:
        session.execute(update(Job).where(Job.kind == "grant").values(state="queued"))
        session.commit()
    client.delete(f"/v1/groups/{GROUP}/members/ada", headers=admin)
    assert drift(app, clock) == ([], [])
    with components(app).database.session() as session:
        session.execute(update(Job).where(Job.kind == "grant").values(state="done"))
        session.commit()
    client.put(f"/v1/groups/{GROUP}/members/ada", headers=admin)
    assignment = client.get("/v1/assignments?subject=ada", headers=admin).json[0]
    with components(app).database.session() as session:  # ending, its revoke not yet run
        session.execute(
            update(Assignment).where(Assignment.id == assignment["id"]).values(state="expiring")
        )
        session.commit()
    assert drift(app, clock) == ([], [])


def test_mending_keeps_the_role_and_never_gives_up_a_revoke(
    app, client, admin, token, people, clock
):
    """--fix grants with the role the package grants, and its revokes retry until they succeed."""
    client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=token("ada"))
    client.delete(f"/v1/groups/{GROUP}/members/ada", headers=admin)
    client.put(f"/v1/groups/{GROUP}/members/bob", headers=admin)
    drift(app, clock, fix=True)
    with components(app).database.session() as session:
        queued = session.scalars(
            select(Job).where(Job.state == "queued", Job.kind.in_(("grant", "revoke")))
        ).all()
        granted = session.scalars(select(Job.role).where(Job.kind == "grant")).all()
    by_kind = {job.kind: job for job in queued}
    assert set(by_kind) == {"grant", "revoke"}
    assert by_kind["grant"].subject_id == "ada" and by_kind["revoke"].subject_id == "bob"
    assert by_kind["grant"].role == granted[0] and by_kind["revoke"].role == granted[0]
    assert by_kind["revoke"].max_attempts == REVOKE_ATTEMPTS


def test_the_directory_is_listed_in_batches_not_per_group(
    app, client, admin, token, people, clock, monkeypatch
):
    """Reconcile asks the directory for its groups' members a batch at a time (one query
    each), never group by group, and the drift it finds is the same."""
    asked: list[str] = []
    original = DirectoryConnector.members

    def one_group(self, resource):
        asked.append(resource)
        return original(self, resource)

    monkeypatch.setattr(DirectoryConnector, "members", one_group)
    client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=token("ada"))
    client.put(f"/v1/groups/{GROUP}/members/bob", headers=admin)
    assert drift(app, clock) == ([], ["bob"])
    assert asked == []
