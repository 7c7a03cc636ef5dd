"""Every endpoint x every role (and no token): 401, 403 or success, as documented."""

from __future__ import annotations

import re

import pytest

from tests.conftest import POLICIES

ROLES = ("none", "user", "app", "admin", "auditor")
OK = "ok"

# (method, path, json body, {role: expected}) — "ok" means any 2xx, or a 4xx other than
# 401/403 caused by the data (e.g. 404/409), which proves the role got past authorisation.
MATRIX = [
    (
        "post",
        "/v1/decisions",
        {"package": "scope-a-readers", "subject": {"id": "u-user"}},
        {"user": OK, "app": OK, "admin": OK, "auditor": 403},
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
    ("get", "/v1/assignments/{id}", None, {r: OK for r in ROLES[1:]}),
    ("delete", "/v1/assignments/{id}", None, {"user": OK, "app": 403, "admin": OK, "auditor": 403}),
    (
        "post",
        "/v1/assignments/{id}/extend",
        {},
        {"user": OK, "app": OK, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/policy-versions", None, {r: OK for r in ROLES[1:]}),
    (
        "post",
        "/v1/policy-versions",
        "FILES",
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("get", "/v1/policy-versions/{id}", None, {r: OK for r in ROLES[1:]}),
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
    ("get", "/v1/users", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    ("get", "/v1/users/{user}", None, {r: OK for r in ROLES[1:]}),
    ("get", "/v1/users/{other}", None, {"user": 403, "app": OK, "admin": OK, "auditor": OK}),
    (
        "put",
        "/v1/users/{new}",
        {"email": "n@x.org"},
        {"user": 403, "app": 403, "admin": OK, "auditor": 403},
    ),
    ("delete", "/v1/users/{new}", None, {"user": 403, "app": 403, "admin": OK, "auditor": 403}),
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
]


VALUES = {
    "id": "none",
    "user": "u-user",
    "other": "someone-else",
    "new": "new",
    "group": "g",
    "org": "o",
}
PLACEHOLDER = re.compile(r"\{[a-z]+\}")


def test_matrix_covers_every_route(app):
    """Every /v1 route and method appears in the matrix (a new endpoint needs a row)."""
    covered = {(m.upper(), PLACEHOLDER.sub("X", p)) for m, p, _, _ in MATRIX}
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
    headers = {} if role == "none" else token("u-user" if role == "user" else f"u-{role}", role)
    from policyd.rules import load_bundle

    files = load_bundle(POLICIES).files
    failures = []
    for method, path, body, expected in MATRIX:
        payload = {"files": files} if body == "FILES" else body
        url = path.format(**VALUES)
        response = getattr(client, method)(url, json=payload, headers=headers)
        want = 401 if role == "none" else expected[role]
        got = response.status_code
        ok = (got not in (401, 403) and got < 500) if want == OK else got == want
        if not ok:
            failures.append(f"{method.upper()} {path} as {role}: {got} (want {want})")
        if got >= 400:
            assert response.is_json and response.json["code"] == got
    assert failures == []
