"""Every endpoint x every role (and no token): 401, 403 or success, as documented."""

from __future__ import annotations

import re

import pytest

from tests.conftest import POLICIES

# "owner" is a user token whose principal owns the example catalog `engineering` (through the
# group Engineering.CatalogOwners): a row without an "owner" entry expects the user's answer.
ROLES = ("none", "user", "owner", "app", "admin", "auditor")
OK = "ok"

# (method, path, json body, {role: expected}) — "ok" means any 2xx, or a 4xx other than
# 401/403 caused by the data (e.g. 404/409), which proves the role got past authorisation.
MATRIX = [
    (
        "post",
        "/v1/decisions",
        {"package": "scope-a-readers", "subject": {"id": "u-user"}},
        {"user": OK, "owner": 403, "app": OK, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/decisions", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/decisions/{id}", None, {r: OK for r in ROLES[1:]}),
    (
        "post",
        "/v1/requests",
        {"package": "scope-a-readers"},
        {"user": OK, "app": OK, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/requests", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/requests?catalog=sales", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/requests?approver=me&catalog=engineering", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/packages/{package}/questions", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/requests/{id}", None, {r: OK for r in ROLES[1:]}),
    ("post", "/v1/requests/{id}/approve", {}, {"user": OK, "app": OK, "admin": OK, "auditor": 403}),
    ("post", "/v1/requests/{id}/deny", {}, {"user": OK, "app": OK, "admin": OK, "auditor": 403}),
    (
        "post",
        "/v1/requests/{id}/cancel",
        None,
        {"user": OK, "app": OK, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/assignments", None, {r: OK for r in ROLES[1:]}),
    (
        "get",
        "/v1/assignments?catalog=engineering",
        None,
        {"user": 403, "owner": OK, "app": OK, "admin": OK, "auditor": OK},
    ),
    (
        "get",
        "/v1/assignments?catalog=sales",
        None,
        {"user": 403, "owner": 403, "app": OK, "admin": OK, "auditor": OK},
    ),
    (
        "post",
        "/v1/assignments",
        {"package": "scope-a-readers", "subject": "u-user", "duration": "PT1H"},
        {"user": 403, "owner": OK, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/assignments/{id}", None, {r: OK for r in ROLES[1:]}),
    ("delete", "/v1/assignments/{id}", None, {"user": OK, "app": 403, "admin": OK, "auditor": 403}),
    (
        "post",
        "/v1/assignments/{id}/extend",
        {},
        {"user": OK, "app": OK, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/catalogs", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/policy-versions", None, {r: OK for r in ROLES[1:]}),
    (
        "post",
        "/v1/policy-versions",
        "FILES",
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    (
        "post",
        "/v1/policy-versions/publications",
        "FILES",
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    (
        "get",
        "/v1/policy-versions/publications/{id}",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": OK},
    ),
    ("get", "/v1/policy-versions/{id}", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/policy-versions/{id}/diff/{id}", None, {r: OK for r in ROLES[1:]}),
    (
        "post",
        "/v1/replay",
        {"version": "{id}"},
        {"user": 403, "app": 403, "admin": OK, "auditor": OK},
    ),
    (
        "post",
        "/v1/policy-versions/{id}/activate",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/groups", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    ("get", "/v1/organizations", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    (
        "get",
        "/v1/organizations?state=proposed",
        None,
        {"user": 403, "app": OK, "admin": OK, "auditor": OK},
    ),
    ("get", "/v1/users", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    ("get", "/v1/users/{user}", None, {**{r: OK for r in ROLES[1:]}, "owner": 403}),
    ("get", "/v1/users/{other}", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    (
        "put",
        "/v1/users/{new}",
        {"email": "n@x.org"},
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("delete", "/v1/users/{new}", None, {"user": 403, "app": 403, "admin": OK, "auditor": 403}),
    (
        "post",
        "/v1/users/{other}/disable",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    (
        "post",
        "/v1/users/{other}/enable",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/groups/{group}", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    ("put", "/v1/groups/{group}", {}, {"user": 403, "app": 403, "admin": OK, "auditor": 403}),
    (
        "get",
        "/v1/groups/{group}/members",
        None,
        {"user": 403, "app": OK, "admin": OK, "auditor": OK},
    ),
    (
        "put",
        "/v1/groups/{group}/members/{user}",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    (
        "delete",
        "/v1/groups/{group}/members/{user}",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/organizations/{org}", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    (
        "put",
        "/v1/organizations/{org}",
        {"display_name": "O"},
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    (
        "delete",
        "/v1/organizations/{org}",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/tokens", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    (
        "post",
        "/v1/tokens",
        {"principal": "x", "role": "user"},
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("delete", "/v1/tokens/{id}", None, {"user": 403, "app": 403, "admin": OK, "auditor": 403}),
    ("get", "/v1/jobs", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    ("get", "/v1/jobs/{id}", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    ("post", "/v1/jobs/{id}/retry", None, {"user": 403, "app": 403, "admin": OK, "auditor": 403}),
    ("get", "/v1/audit", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    ("get", "/v1/sod-violations", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    ("get", "/v1/audit/verify", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    ("get", "/v1/access-report", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    (
        "post",
        "/v1/auto-assignments/preview",
        {},
        {"user": 403, "app": 403, "admin": OK, "auditor": OK},
    ),
    ("get", "/v1/reviews/campaigns", None, {"user": 403, "app": 403, "admin": OK, "auditor": OK}),
    (
        "get",
        "/v1/reviews/campaigns/{id}",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": OK},
    ),
    (
        "get",
        "/v1/reviews/campaigns/{id}/export",
        None,
        {"user": 403, "app": 403, "admin": OK, "auditor": OK},
    ),
    ("get", "/v1/reviews/items", None, {"user": OK, "app": 403, "admin": OK, "auditor": OK}),
    ("get", "/v1/reviews/items/{id}", None, {"user": OK, "app": 403, "admin": OK, "auditor": OK}),
    (
        "post",
        "/v1/reviews/items/{id}/decision",
        {"decision": "keep", "justification": "still needed"},
        {"user": OK, "app": 403, "admin": OK, "auditor": 403},
    ),
]


VALUES = {
    "id": "none",
    "user": "u-user",
    "other": "someone-else",
    "new": "new",
    "group": "g",
    "org": "o",
    "package": "scope-a-readers",
}
PLACEHOLDER = re.compile(r"\{[a-z]+\}")


def test_matrix_covers_every_route(app):
    """Every /v1 route and method appears in the matrix (a new endpoint needs a row)."""
    covered = {(m.upper(), PLACEHOLDER.sub("X", p.split("?")[0])) for m, p, _, _ in MATRIX}
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1"):
            continue
        path = re.sub(r"<[^>]+>", "X", rule.rule)
        routes |= {(method, path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert routes == covered


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_answers_each_role_as_documented(client, token, admin, role):
    """401 without a token; 403 for a role without the right; otherwise past authorisation."""
    client.put("/v1/users/{user}", json={"email": "u@contoso.com"}, headers=admin)
    client.put("/v1/groups/{group}", json={}, headers=admin)
    client.put("/v1/groups/Engineering.CatalogOwners", json={}, headers=admin)
    client.put("/v1/users/u-owner", json={"email": "o@contoso.com"}, headers=admin)
    client.put("/v1/groups/Engineering.CatalogOwners/members/u-owner", headers=admin)
    principal = "u-user" if role == "user" else f"u-{role}"
    headers = {} if role == "none" else token(principal, "user" if role == "owner" else role)
    from policyd.rules import load_bundle

    files = load_bundle(POLICIES).files
    failures = []
    for method, path, body, expected in MATRIX:
        payload = {"files": files} if body == "FILES" else body
        url = path.format(**VALUES)
        response = getattr(client, method)(url, json=payload, headers=headers)
        want = 401 if role == "none" else expected.get(role, expected.get("user"))
        got = response.status_code
        ok = (got not in (401, 403) and got < 500) if want == OK else got == want
        if not ok:
            failures.append(f"{method.upper()} {path} as {role}: {got} (want {want})")
        if got >= 400:
            assert response.is_json and response.json["code"] == got
    assert failures == []


def test_an_app_reads_only_what_it_asked_for(client, token, admin, people):
    """Least privilege, like Entra's app permissions: an app sees the decisions it asked for,
    the requests it filed (or takes part in) and the assignments those granted; not others'."""
    portal, other = token("portal", "app"), token("other-app", "app")
    body = {"package": "scope-a-readers", "subject": {"id": "ada"}}
    mine = client.post("/v1/decisions", json=body, headers=portal).json["decision_id"]
    theirs = client.post("/v1/decisions", json=body, headers=other).json["decision_id"]
    filed = client.post("/v1/requests", json={**body, "justification": "x"}, headers=portal).json
    by_admin = client.post(
        "/v1/requests", json={"package": "scope-a-readers", "subject": {"id": "bob"}}, headers=admin
    ).json
    granted = client.get("/v1/assignments", headers=admin).json
    assert {a["request_id"] for a in granted} >= {filed["id"]}

    def ids(url: str) -> set[str]:
        return {item["id"] for item in client.get(url, headers=portal).json}

    assert ids("/v1/decisions") == {mine, filed["decision_id"]}  # its request's decision too
    assert ids("/v1/requests") == {filed["id"]}
    assert {a["request_id"] for a in client.get("/v1/assignments", headers=portal).json} == {
        filed["id"]
    }
    assert client.get(f"/v1/decisions/{mine}", headers=portal).status_code == 200
    assert client.get(f"/v1/decisions/{theirs}", headers=portal).status_code == 404
    assert client.get(f"/v1/requests/{by_admin['id']}", headers=portal).status_code == 404
    others = [a for a in granted if a["request_id"] != filed["id"]]
    for assignment in others:
        response = client.get(f"/v1/assignments/{assignment['id']}", headers=portal)
        assert response.status_code == 404
    assert client.get(f"/v1/decisions/{theirs}", headers=token("aud", "auditor")).status_code == 200


def test_every_operation_is_guarded(app):
    """Every /v1 view method declares its roles with @guard, which authorises before any
    input is parsed (a new endpoint without it fails here)."""
    missing = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1"):
            continue
        view = app.view_functions[rule.endpoint].view_class
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if not getattr(getattr(view, method.lower()), "roles", None):
                missing.append(f"{method} {rule.rule}")
    assert missing == []
