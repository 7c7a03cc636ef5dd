"""Reconciliation against the directory connector: report drift, mend it, never re-grant."""

from __future__ import annotations

from policyd.services.reconcile import reconcile

GROUP = "Group.ScopeA.Readers"


def drift(app, clock, fix=False):
    with app.extensions["policyd.db"].session() as session:
        report = reconcile(
            session, app.extensions["policyd.connectors"], now=clock(), only="directory", fix=fix
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
    app.extensions["policyd.worker"].run_jobs(now=clock())
    assert members(client, admin) == ["ada"]
    assert drift(app, clock) == ([], [])


def test_expired_access_is_never_granted_again(app, client, admin, token, people, clock):
    """After expiry the person is neither missing nor re-added, even if the revoke was undone."""
    client.post("/v1/requests", json={"package": "scope-a-readers"}, headers=token("ada"))
    clock.advance(hours=9)
    app.extensions["policyd.worker"].sweep(now=clock())
    assert members(client, admin) == []
    assert drift(app, clock) == ([], [])
    client.put(f"/v1/groups/{GROUP}/members/ada", headers=admin)  # someone puts it back
    assert drift(app, clock, fix=True) == ([], ["ada"])
    app.extensions["policyd.worker"].run_jobs(now=clock())
    assert members(client, admin) == []
