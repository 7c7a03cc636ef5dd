"""Schemathesis drives every documented operation with generated input and runs all its checks.

Every operation is called by a user, a catalog owner, an app and an admin token, with input
that fits the OpenAPI document (positive) and input that does not (negative). Each response goes
through every check schemathesis has: no 5xx, a documented status code, content type and headers, a
body that fits its schema, schema-invalid input refused, schema-valid input accepted, 405
with an Allow header for undocumented methods, and 401 without the token.

CI runs a few examples per operation (POLICYD_FUZZ_EXAMPLES, default 2). The full sweep is
the same test with more, e.g. `POLICYD_FUZZ_EXAMPLES=100` (docs/api.md).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

EXAMPLES = int(os.environ.get("POLICYD_FUZZ_EXAMPLES", "2"))
ROLES = ("user", "owner", "app", "admin")  # owner: a user who owns the catalog engineering
# Operations whose valid input depends on more than the document can say (stored data, rule
# files, one field or another): there a schema-valid body may rightly be a 422, so the
# positive-acceptance check does not apply.
DATA_DEPENDENT = {
    "POST /v1/policy-versions": "the files must be valid rule files",
    # Validated later, by the worker; but its paths (keys) must be 1 to 255 characters, which
    # the generator does not apply to keys.
    "POST /v1/policy-versions/publications": "file paths of 1 to 255 characters",
    "POST /v1/replay": "exactly one of version and files; the files must be valid rule files",
    "GET /v1/access-report": "exactly one of package, resource and subject; at, or from and to",
    "PUT /v1/users/{user_id}": "manager_id must name a directory user",
    "POST /v1/assignments": "the caller must administer the package; the user must exist; "
    "the duration must fit the package's lifetime",
    "GET /v1/assignments": "catalog must name a catalog of the active version (and be the "
    "caller's own, for a user)",
    "GET /v1/requests": "catalog must name a catalog of the active version",
}


def names_a_cursor(case) -> bool:
    """A case with an `after` value: only a cursor a list gave is one (the document cannot
    say which strings are), so a schema-valid value may rightly be a 422 naming `after`."""
    return bool((case.query or {}).get("after"))


def nul_in_names(body) -> bool:
    """A body with a NUL in an attribute name: the document's propertyNames forbids it, but
    the generator does not apply propertyNames to keys (so such a body is no positive case)."""
    if not isinstance(body, dict):
        return False
    subject = body.get("subject")  # an object in requests and decisions, an id elsewhere
    found = [
        body.get("attributes"),
        subject.get("attributes") if isinstance(subject, dict) else None,
    ]
    return any(isinstance(a, dict) and any("\x00" in k for k in a) for a in found)


def rests_on_the_token(case) -> bool:
    """A negative case that dropped or spoiled the Authorization header: the caller's token
    replaces it, so what is sent may be valid input after all (no negative case)."""
    data = case.meta.phase.data if case.meta is not None else None
    mutations = getattr(data, "mutations", ()) or ()
    named = {getattr(data, "parameter", None), *(m.parameter for m in mutations)}
    return "Authorization" in named


def fuzz(operation, mode, headers: dict[str, str], statuses: Counter) -> None:
    """Call `operation` EXAMPLES times with generated input and run the checks on each answer."""
    # Every check schemathesis runs by default, less the one that cannot apply here.
    excluded = [positive_data_acceptance] if operation.label in DATA_DEPENDENT else []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=EXAMPLES <= 10,  # CI's share is the same cases every run
        suppress_health_check=list(HealthCheck),
    )
    def call(case):
        if mode is GenerationMode.POSITIVE:
            assume(not nul_in_names(case.body))
        else:
            assume(not rests_on_the_token(case))
        skipped = excluded
        if mode is GenerationMode.POSITIVE and names_a_cursor(case):
            skipped = [positive_data_acceptance]
        response = case.call_and_validate(headers=headers, excluded_checks=skipped)
        statuses[response.status_code] += 1

    try:
        call()
    except Unsatisfiable:
        # Only the Authorization header can be spoiled here (no parameters, no body): the
        # ignored_auth check covers that in every positive case.
        assert mode is GenerationMode.NEGATIVE


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_pass_every_check(app, client, token, mode):
    """Whatever a user, an app or an admin sends to any operation, every check passes."""
    headers = {"admin": token("root", "admin"), "user": token("ada"), "app": token("portal", "app")}
    headers["owner"] = token("carol")
    client.put("/v1/users/ada", json={"email": "ada@contoso.com"}, headers=headers["admin"])
    client.put("/v1/users/carol", json={"email": "carol@contoso.com"}, headers=headers["admin"])
    client.put("/v1/groups/Engineering.CatalogOwners", json={}, headers=headers["admin"])
    owners = "/v1/groups/Engineering.CatalogOwners/members/carol"
    client.put(owners, headers=headers["admin"])
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    statuses: Counter[int] = Counter()
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and not (len(operation.query) or len(operation.body)):
            continue  # no input to spoil but the token (and text path ids): nothing negative
        for role in ROLES:
            fuzz(operation, mode, headers[role], statuses)
    print(f"{mode.value}: {sum(statuses.values())} requests, by status {sorted(statuses.items())}")
    assert statuses and not any(status >= 500 for status in statuses)
