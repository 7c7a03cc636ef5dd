"""Publishing, listing, rolling back and propagating policy versions."""

from __future__ import annotations

from policyd.api import create_app
from policyd.api.context import components
from policyd.rules import load_bundle
from tests.conftest import POLICIES

BROKEN = "apiVersion: policyd/v1\npackage:\n  id: broken\n  displayname: Typo\n  rules: []\n"


def example_files() -> dict[str, str]:
    return load_bundle(POLICIES).files


def changed_files() -> dict[str, str]:
    files = example_files()
    files["scope-a-readers.yaml"] = files["scope-a-readers.yaml"].replace(
        "duration: PT8H, max: PT8H", "duration: PT4H, max: PT4H"
    )
    return files


def test_broken_bundle_is_rejected_with_file_line_errors(client, admin):
    """A bundle with errors is 422 with every file:line problem; the active version stays."""
    before = client.get("/readyz").json["version"]
    response = client.post("/v1/policy-versions", json={"files": {"b.yaml": BROKEN}}, headers=admin)
    assert response.status_code == 422
    assert response.json["errors"]["files"] == [
        "b.yaml:2: package.displayName: required key is missing",
        "b.yaml:4: package.displayname: unknown key (check its spelling; see docs/rules.md)",
        "b.yaml:5: package.rules: a package needs at least one rule",
    ]
    assert client.get("/readyz").json["version"] == before
    assert len(client.get("/v1/policy-versions", headers=admin).json) == 1


def test_publish_activates_and_rollback_restores(client, admin, token, people):
    """Publishing a new version changes decisions at once; activating the old one restores them."""
    first = client.get("/readyz").json["version"]
    published = client.post(
        "/v1/policy-versions", json={"files": changed_files(), "message": "4h"}, headers=admin
    )
    assert published.status_code == 201 and published.json["active"]
    body = {"package": "scope-a-readers", "subject": {"id": "ada"}}
    decision = client.post("/v1/decisions", json=body, headers=admin).json
    assert decision["version"] == published.json["id"]
    assert decision["lifetime"]["expires_at"] == "2026-01-05T13:00:00Z"
    listed = client.get("/v1/policy-versions", headers=token("aud", "auditor")).json
    assert [v["active"] for v in listed] == [True, False] or [v["active"] for v in listed] == [
        False,
        True,
    ]
    rolled = client.post(f"/v1/policy-versions/{first}/activate", headers=admin)
    assert rolled.status_code == 200
    again = client.post("/v1/decisions", json=body, headers=admin).json
    assert (again["version"], again["lifetime"]["expires_at"]) == (first, "2026-01-05T17:00:00Z")


def test_version_detail_has_the_files_and_is_immutable(client, admin):
    """A version shows every file's text; republishing the same content reuses it."""
    first = client.get("/readyz").json["version"]
    detail = client.get(f"/v1/policy-versions/{first}", headers=admin).json
    assert detail["files"] == example_files()
    same = client.post("/v1/policy-versions", json={"files": example_files()}, headers=admin)
    assert same.json["id"] == first
    assert client.get("/v1/policy-versions/nope", headers=admin).status_code == 404


def test_every_process_picks_up_a_new_version(app, client, admin, database_url, clock):
    """A second app on the same database switches to a version published by the first."""
    other = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": "",
            "POLICYD_CLOCK": clock,
            "POLICYD_SYNC_INTERVAL": 0,
        }
    )
    try:
        old = other.test_client().get("/readyz").json["version"]
        published = client.post(
            "/v1/policy-versions", json={"files": changed_files()}, headers=admin
        )
        new = published.json["id"]
        assert new != old
        other.test_client().get("/readyz")  # starts building the new version beside requests
        components(other).sync.join()
        assert other.test_client().get("/readyz").json["version"] == new
    finally:
        components(other).runtime.close()
        components(other).database.dispose()


def test_only_admins_publish(client, token):
    """Apps, users and auditors cannot publish or activate."""
    for role in ("user", "app", "auditor"):
        headers = token(f"who-{role}", role)
        response = client.post(
            "/v1/policy-versions", json={"files": example_files()}, headers=headers
        )
        assert response.status_code == 403


def test_resources_must_name_a_configured_connector(client, admin):
    """A package whose resource names an unknown connector instance is rejected whole."""
    files = example_files()
    files["scope-a-readers.yaml"] = files["scope-a-readers.yaml"].replace(
        "{connector: directory,", "{connector: ldap-typo,"
    )
    response = client.post("/v1/policy-versions", json={"files": files}, headers=admin)
    assert response.status_code == 422
    assert response.json["errors"]["files"] == [
        "scope-a-readers.yaml:9: package.resources[0].connector: unknown connector instance "
        "'ldap-typo'; configured: directory"
    ]


def test_resources_must_be_in_a_form_their_connector_takes(client, admin):
    """A directory resource that is not group:<id> is refused at publication, at its line,
    instead of failing every grant later."""
    files = example_files()
    files["scope-a-readers.yaml"] = files["scope-a-readers.yaml"].replace(
        'resource: "group:Group.ScopeA.Readers"', 'resource: "Group.ScopeA.Readers"'
    )
    assert files["scope-a-readers.yaml"] != example_files()["scope-a-readers.yaml"]
    response = client.post("/v1/policy-versions", json={"files": files}, headers=admin)
    assert response.status_code == 422
    assert response.json["errors"]["files"] == [
        "scope-a-readers.yaml:9: package.resources[0].resource: 'directory': directory "
        "resources are group:<id>, not 'Group.ScopeA.Readers'"
    ]


DENY_RULE = """\
    - id: no-contractors
      when: {subject.employeeType: contractor}
      then: {decision: deny, reason: Contractors cannot read Scope A}

"""


def test_diff_between_versions_lists_exactly_the_changes(client, admin, token):
    """The JIT package at 4 h plus a deny rule, diffed by an auditor: one changed lifetime and
    one added rule, field by field."""
    first = client.get("/readyz").json["version"]
    files = changed_files()
    text = files["scope-a-readers.yaml"]
    files["scope-a-readers.yaml"] = text.replace("  rules:\n", "  rules:\n" + DENY_RULE, 1)
    second = client.post("/v1/policy-versions", json={"files": files}, headers=admin).json["id"]
    response = client.get(
        f"/v1/policy-versions/{first}/diff/{second}", headers=token("aud", "auditor")
    )
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["old"], body["new"], body["effective"]) == (first, second, True)
    (package,) = body["packages"]
    assert package["fields"] == [
        {
            "field": "lifetime",
            "before": {"duration": "PT8H", "max": "PT8H"},
            "after": {"duration": "PT4H", "max": "PT4H"},
        }
    ]
    assert [(r["id"], r["change"], r["line"]) for r in package["rules"]] == [
        ("no-contractors", "added", 12)
    ]
    assert body["summary"]["rules"] == {"added": 1, "removed": 0, "changed": 0}


def test_diff_of_versions_that_decide_alike_is_no_effective_change(client, admin):
    """A version whose only change moves a rule of its own priority is another version with
    no effective change."""
    first = client.get("/readyz").json["version"]
    files = example_files()
    text = files["scope-a-readers.yaml"]
    head, _, rules = text.partition("  rules:\n")
    eligible, _, rest = rules.partition("\n    - id: everyone-else")
    files["scope-a-readers.yaml"] = f"{head}  rules:\n    - id: everyone-else{rest}\n{eligible}"
    second = client.post("/v1/policy-versions", json={"files": files}, headers=admin).json["id"]
    assert second != first
    body = client.get(f"/v1/policy-versions/{first}/diff/{second}", headers=admin).json
    assert (body["effective"], body["packages"]) == (False, [])


def test_diff_with_an_unknown_version_is_404_naming_the_side(client, admin):
    """An unknown id on either side is a 404 whose errors name `old` or `new`."""
    first = client.get("/readyz").json["version"]
    for path, side in ((f"nope/diff/{first}", "old"), (f"{first}/diff/nope", "new")):
        response = client.get(f"/v1/policy-versions/{path}", headers=admin)
        assert response.status_code == 404
        assert response.json["errors"] == {side: ["no policy version 'nope'"]}


def test_the_diff_endpoint_is_documented_with_its_response_schema(client):
    """/openapi.json describes the diff's answer: packages, rules and field changes."""
    spec = client.get("/openapi.json").json
    operation = spec["paths"]["/v1/policy-versions/{version_id}/diff/{other_id}"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"old", "new", "effective", "summary", "packages"} <= set(schema["properties"])
    assert "404" in operation["responses"]


def test_a_version_published_through_the_api_has_no_git_state(client, admin):
    """The API's publication has no git: git_commit and git_dirty are null."""
    published = client.post("/v1/policy-versions", json={"files": changed_files()}, headers=admin)
    assert (published.json["git_commit"], published.json["git_dirty"]) == (None, None)


def test_diff_with_a_stored_version_that_no_longer_loads_is_422_with_its_problems(
    app, client, admin, clock
):
    """A version stored under older checks that this policyd refuses: 422 naming the side,
    with the file:line problems, never a 500."""
    from policyd.store.models import PolicyVersion

    first = client.get("/readyz").json["version"]
    with components(app).database.session() as session:
        session.add(
            PolicyVersion(
                id="0ld0ld0ld0ld",
                content_hash="0" * 64,
                files={"b.yaml": BROKEN},
                author="someone",
                message="",
                created_at=clock(),
                packages=["broken"],
            )
        )
        session.commit()
    response = client.get(f"/v1/policy-versions/{first}/diff/0ld0ld0ld0ld", headers=admin)
    assert response.status_code == 422
    assert response.json["message"] == "version 0ld0ld0ld0ld does not load with this policyd"
    assert (
        "b.yaml:2: package.displayName: required key is missing" in response.json["errors"]["new"]
    )


def test_an_accepted_publication_is_published_by_the_worker_and_becomes_active(
    app, client, admin, clock
):
    """202 at once with a status to poll; the worker's next sweep stores and activates it."""
    accepted = client.post(
        "/v1/policy-versions/publications",
        json={"files": changed_files(), "message": "4h"},
        headers=admin,
    )
    assert accepted.status_code == 202
    where = accepted.headers["Location"]
    assert where == f"/v1/policy-versions/publications/{accepted.json['id']}"
    assert (accepted.json["state"], accepted.json["version"]) == ("queued", None)
    assert client.get(where, headers=admin).json["state"] == "queued"
    assert components(app).worker.sweep(now=clock())["published"] == 1
    status = client.get(where, headers=admin).json
    assert (status["state"], status["errors"], status["message"]) == ("active", None, "4h")
    listed = client.get("/v1/policy-versions", headers=admin).json
    assert [v["id"] for v in listed if v["active"]] == [status["version"]]


def test_an_accepted_broken_bundle_is_rejected_with_file_line_errors(app, client, admin, clock):
    """The worker rejects it with every file:line problem; the active version stays."""
    before = client.get("/readyz").json["version"]
    accepted = client.post(
        "/v1/policy-versions/publications", json={"files": {"b.yaml": BROKEN}}, headers=admin
    )
    assert accepted.status_code == 202
    components(app).worker.sweep(now=clock())
    status = client.get(accepted.headers["Location"], headers=admin).json
    assert (status["state"], status["version"]) == ("rejected", None)
    assert status["errors"] == [
        "b.yaml:2: package.displayName: required key is missing",
        "b.yaml:4: package.displayname: unknown key (check its spelling; see docs/rules.md)",
        "b.yaml:5: package.rules: a package needs at least one rule",
    ]
    listed = client.get("/v1/policy-versions", headers=admin).json
    assert [v["id"] for v in listed if v["active"]] == [before]


def test_an_unknown_publication_is_404_naming_the_id(client, admin):
    """Polling a publication that does not exist names the id."""
    response = client.get("/v1/policy-versions/publications/nope", headers=admin)
    assert response.status_code == 404
    assert "id" in response.json["errors"]


def test_a_publication_without_files_is_422_naming_the_field(client, admin):
    """The request's shape is checked at once, before anything is queued."""
    response = client.post("/v1/policy-versions/publications", json={}, headers=admin)
    assert response.status_code == 422
    assert "files" in response.json["errors"]


def test_the_diff_of_versions_shows_catalog_changes(client, admin):
    """A version that changes a catalog's owners answers with that catalog's field change."""
    first = client.get("/readyz").json["version"]
    files = example_files()
    files["catalogs.yaml"] = files["catalogs.yaml"].replace('"group:Sales.Ops"', '"user:sam"')
    second = client.post("/v1/policy-versions", json={"files": files}, headers=admin).json["id"]
    body = client.get(f"/v1/policy-versions/{first}/diff/{second}", headers=admin).json
    assert (body["effective"], body["packages"]) == (True, [])
    assert body["catalogs"] == [
        {
            "id": "sales",
            "change": "changed",
            "file": "catalogs.yaml",
            "fields": [{"field": "owners", "before": ["group:Sales.Ops"], "after": ["user:sam"]}],
            "joined": [],
            "left": [],
        }
    ]
    assert body["summary"]["catalogs"] == {"added": 0, "removed": 0, "changed": 1}
