"""Bad input at the API boundary: a 4xx in the one error shape naming the field, never a 500."""

from __future__ import annotations

import json

import pytest

from policyd.api.context import components
from policyd.api.parser import MAX_DEPTH, BodyError, load_json
from policyd.rules.inputs import TooManyDigits

# Every operation that takes a JSON body, with the roles that may call it.
BODIES = [
    ("post", "/v1/decisions", ("user", "app", "admin")),
    ("post", "/v1/requests", ("user", "app", "admin")),
    ("post", "/v1/requests/r/approve", ("user", "app", "admin")),
    ("post", "/v1/requests/r/deny", ("user", "app", "admin")),
    ("post", "/v1/assignments/a/extend", ("user", "app", "admin")),
    ("post", "/v1/policy-versions", ("admin",)),
    ("put", "/v1/users/u", ("admin",)),
    ("put", "/v1/groups/g", ("admin",)),
    ("put", "/v1/organizations/o", ("admin",)),
    ("post", "/v1/tokens", ("admin",)),
]
UNREADABLE = {
    "truncated": b'{"package": "scope-a-re',
    "not-utf8": b'{"package": "\xff\xfe"}',
    "nested": b"[" * 10_000 + b"]" * 10_000,
}


def send(client, method, url, headers, data: bytes):
    return getattr(client, method)(url, data=data, content_type="application/json", headers=headers)


def assert_error(response, status: int, field: str | None = None) -> None:
    """The one error shape, with `field` among the named fields."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert body["code"] == status and body["status"] and body["message"]
    if field is not None:
        assert field in body["errors"], body
        assert all(isinstance(m, str) for m in body["errors"][field])


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
@pytest.mark.parametrize("role", ["user", "app", "admin", "auditor"])
def test_an_unreadable_body_is_a_400_or_403_for_every_role_and_endpoint(client, token, role, kind):
    """Truncated, non-UTF-8 or deeply nested JSON: 400 naming `body` for whoever may call
    the endpoint, 403 for whoever may not (authorisation comes before the body is read)."""
    headers = token(f"u-{role}", role)
    for method, url, allowed in BODIES:
        response = send(client, method, url, headers, UNREADABLE[kind])
        if role in allowed:
            assert_error(response, 400, "body")
        else:
            assert_error(response, 403)


def test_a_decision_nested_past_the_limit_is_a_400_as_on_every_route(client, admin, people):
    """A decision body nested 10,000 levels, from a cached token: 400 naming body."""
    plain = json.dumps({"package": "scope-a-readers", "subject": {"id": "ada"}}).encode()
    assert send(client, "post", "/v1/decisions", admin, plain).status_code == 200  # cached
    deep = b'{"package": "scope-a-readers", "subject": {"id": "ada", "attributes": {"a": '
    deep += b"[" * 10_000 + b"]" * 10_000 + b"}}}"
    assert_error(send(client, "post", "/v1/decisions", admin, deep), 400, "body")


def test_nesting_up_to_the_limit_is_read_and_past_it_is_refused():
    """MAX_DEPTH levels load; one more is a BodyError, whatever the brackets around it."""
    assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(BodyError, match="nested deeper"):
        load_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    with pytest.raises(BodyError, match="nested deeper"):
        load_json(b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1))
    flat = b"[" + b",".join([b"[]"] * 100) + b"]"  # many brackets, little depth
    assert len(load_json(flat)) == 100


def test_an_integer_longer_than_python_converts_is_kept_for_the_schema_to_refuse():
    """5,000 digits load as TooManyDigits (not a ValueError), so the field can be named."""
    value = load_json(b'{"n": ' + b"7" * 5000 + b"}")
    assert isinstance(value["n"], TooManyDigits) and value["n"].digits == 5000


@pytest.mark.parametrize("digits", [400, 5000])
def test_huge_integers_in_subject_attributes_are_a_422_naming_them(client, admin, people, digits):
    """Integers past what a double holds (400 digits) or Python converts (5,000): 422."""
    body = '{"package": "scope-a-readers", "subject": {"id": "ada", "attributes": {"n": N}}}'
    response = send(
        client, "post", "/v1/decisions", admin, body.replace("N", "9" * digits).encode()
    )
    assert_error(response, 422, "subject.attributes.n")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_on_every_backend(client, admin, people, value):
    """NaN and infinities in attributes are a 422 naming the attribute, for a stored user and
    for a decision's subject (the decision route's loader refuses them as marshmallow does)."""
    user = '{"email": "zed@contoso.com", "attributes": {"level": VALUE}}'.replace("VALUE", value)
    assert_error(
        send(client, "put", "/v1/users/zed", admin, user.encode()), 422, "attributes.level"
    )
    decision = '{"package": "scope-a-readers", "subject": {"id": "ada", "attributes": {"x": V}}}'
    response = send(client, "post", "/v1/decisions", admin, decision.replace("V", value).encode())
    assert_error(response, 422, "subject.attributes.x")


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("put", "/v1/users/ada", {"email": "a\x00@contoso.com"}, "email"),
        ("put", "/v1/users/ada", {"attributes": {"k\x00": "v"}}, "attributes.k\x00"),
        ("put", "/v1/users/ada", {"department": "R\x00D"}, "department"),
        ("put", "/v1/groups/g", {"display_name": "G\x00"}, "display_name"),
        ("post", "/v1/requests", {"package": "p\x00"}, "package"),
        ("post", "/v1/decisions", {"package": "p", "subject": {"id": "a\x00"}}, "subject.id"),
    ],
)
def test_nul_characters_are_a_422_naming_the_field(client, admin, people, method, url, body, field):
    """A NUL in any text is refused before a database sees it (PostgreSQL would refuse it,
    SQLite would store it): the same 422 on both."""
    assert_error(getattr(client, method)(url, json=body, headers=admin), 422, field)


def test_nul_characters_in_path_ids_are_a_422(client, admin):
    """A user id with a NUL in the path: 422 naming it, nothing stored."""
    assert_error(client.put("/v1/users/a%00b", json={}, headers=admin), 422, "user_id")
    assert client.get("/v1/users", headers=admin).json == []


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/requests/a%00b", "request_id"),
        ("/v1/assignments/a%00b", "assignment_id"),
        ("/v1/decisions/a%00b", "decision_id"),
        ("/v1/jobs/a%00b", "job_id"),
    ],
)
def test_nul_characters_in_any_path_id_are_a_422_on_both_backends(client, admin, url, field):
    """Looking up an id with a NUL: 422 naming it (PostgreSQL could not even compare it)."""
    assert_error(client.get(url, headers=admin), 422, field)


def test_nul_characters_in_query_filters_are_a_422(client, admin):
    """A NUL in a filter: 422 naming the query parameter."""
    response = client.get("/v1/assignments?subject=a%00b", headers=admin)
    assert_error(response, 422, "query.subject")


@pytest.mark.parametrize("duration", ["P10675199D", "P9999Y", "PT999999999999H"])
def test_durations_past_what_a_date_holds_are_a_422(client, token, people, duration):
    """A request or an extension asking for more time than any date holds: 422 on duration."""
    ada = token("ada")
    body = {"package": "scope-a-readers", "duration": duration}
    assert_error(client.post("/v1/requests", json=body, headers=ada), 422, "duration")
    extend = client.post("/v1/assignments/x/extend", json={"duration": duration}, headers=ada)
    assert_error(extend, 422, "duration")


def test_a_token_lifetime_past_what_a_date_holds_is_a_422(client, admin):
    """expires_in goes through the same duration check."""
    body = {"principal": "x", "role": "user", "expires_in": "P10675199D"}
    assert_error(client.post("/v1/tokens", json=body, headers=admin), 422, "expires_in")


@pytest.mark.parametrize(
    "url",
    [
        "/v1/assignments?expiring_before=0001-01-01T00:00:00%2B14:00",
        "/v1/decisions?since=9999-12-31T23:59:59-14:00",
        "/v1/audit?since=0001-01-01T00:00:00%2B00:01",
    ],
)
def test_dates_that_utc_cannot_hold_are_a_422(client, admin, url):
    """A date whose UTC moment is outside years 1 to 9999: 422 naming the query field."""
    response = client.get(url, headers=admin)
    assert_error(response, 422, f"query.{url.split('?')[1].split('=')[0]}")


def test_a_body_past_the_limit_is_a_413_in_the_error_shape(client, token, people):
    """A user posting a 2 MiB justification gets 413 naming `body`; nothing is stored."""
    body = {"package": "scope-a-readers", "justification": "x" * (2 << 20)}
    response = client.post("/v1/requests", json=body, headers=token("ada"))
    assert_error(response, 413, "body")
    assert "1048576 bytes" in response.json["message"]
    assert client.get("/v1/requests", headers=token("ada")).json == []


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        (
            "/v1/requests",
            {"package": "scope-a-readers", "justification": "x" * 2001},
            "justification",
        ),
        ("/v1/requests/r/approve", {"comment": "x" * 2001}, "comment"),
        ("/v1/requests", {"package": "p" * 201}, "package"),
    ],
)
def test_texts_past_their_limit_are_a_422(client, token, people, url, body, field):
    """Justifications and comments have at most 2,000 characters, ids 200."""
    assert_error(client.post(url, json=body, headers=token("ada")), 422, field)


def test_too_many_attributes_or_groups_are_a_422(client, admin, people):
    """At most 100 attributes per user or subject, and 500 groups per subject."""
    attributes = {f"a{i}": i for i in range(101)}
    user = {"email": "zed@contoso.com", "attributes": attributes}
    assert_error(client.put("/v1/users/zed", json=user, headers=admin), 422, "attributes")
    subject = {"id": "ada", "groups": [f"g{i}" for i in range(501)]}
    body = {"package": "scope-a-readers", "subject": subject}
    assert_error(client.post("/v1/decisions", json=body, headers=admin), 422, "subject.groups")


def test_an_empty_put_keeps_a_user_as_it_was(client, admin, people):
    """PUT /v1/users/{id} with {} changes nothing: fields left out keep their value."""
    before = client.get("/v1/users/sam", headers=admin).json
    assert client.put("/v1/users/sam", json={}, headers=admin).json == before
    assert client.get("/v1/users/sam", headers=admin).json == before


def test_an_empty_put_creates_a_group_and_keeps_a_named_one(client, admin):
    """{} creates an empty group (as the README's session does) and leaves a name in place."""
    assert client.put("/v1/groups/G", json={}, headers=admin).json == {
        "id": "G",
        "display_name": None,
    }
    client.put("/v1/groups/G", json={"display_name": "Sales"}, headers=admin)
    assert client.put("/v1/groups/G", json={}, headers=admin).json["display_name"] == "Sales"
    assert client.put("/v1/groups/G", json={"display_name": None}, headers=admin).json == {
        "id": "G",
        "display_name": None,
    }


def test_email_must_be_an_email_address(client, admin):
    """A user's email is an e-mail address or null."""
    response = client.put("/v1/users/zed", json={"email": "not an address"}, headers=admin)
    assert_error(response, 422, "email")


def test_a_manager_must_be_in_the_directory_unless_marked_external(client, admin, people):
    """An unknown manager_id is a 422 naming it; manager_external: true accepts someone outside
    and is not echoed (the service's side: tests/services/test_directory.py)."""
    response = client.put("/v1/users/zed", json={"manager_id": "nobody"}, headers=admin)
    assert_error(response, 422, "manager_id")
    external = {"manager_id": "boss@partner", "manager_external": True}
    answer = client.put("/v1/users/zed", json=external, headers=admin)
    assert answer.status_code == 200 and answer.json["manager_id"] == "boss@partner"
    assert "manager_external" not in answer.json


@pytest.mark.parametrize(
    "url",
    [
        "/v1/users?bogus=1",
        "/v1/users/ada?x=1",
        "/v1/assignments?subjects=ada",
        "/v1/requests?state=pending_approval&colour=blue",
    ],
)
def test_an_unknown_query_parameter_is_a_422(client, admin, people, url):
    """A query parameter the operation does not take is named, not ignored."""
    response = client.get(url, headers=admin)
    unknown = [p.split("=")[0] for p in url.split("?")[1].split("&")][-1]
    assert_error(response, 422, f"query.{unknown}")


def test_a_head_request_takes_the_query_parameters_of_its_get(client, admin, people):
    """HEAD /v1/users?page=2 is GET's query: accepted, with the page's header."""
    response = client.head("/v1/users?page=2&page_size=2", headers=admin)
    assert response.status_code == 200 and "X-Pagination" in response.headers


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/requests?state=pending", "query.state"),
        ("/v1/assignments?state=gone", "query.state"),
        ("/v1/jobs?state=lost", "query.state"),
    ],
)
def test_an_unknown_filter_value_is_a_422(client, admin, url, field):
    """A state that does not exist is named, not answered with an empty list."""
    assert_error(client.get(url, headers=admin), 422, field)


def test_an_unknown_query_parameter_on_an_admin_endpoint_is_still_a_403_for_a_user(client, token):
    """Authorisation is decided before the query is judged."""
    assert_error(client.get("/v1/tokens?bogus=1", headers=token("ada")), 403)


def test_a_wrong_method_is_a_405_with_allow_in_the_error_shape(client, admin):
    """405 names the allowed methods in Allow and answers in the error shape."""
    response = client.patch("/v1/users/ada", json={}, headers=admin)
    assert_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "PUT", "DELETE"}


def test_an_unknown_path_is_a_404_in_the_error_shape(client, admin):
    """404 for a path no route has, in the error shape."""
    assert_error(client.get("/v1/nothing-here", headers=admin), 404)


def test_the_pagination_header_is_what_the_document_declares(client, admin, people):
    """X-Pagination is documented as JSON text with the page's numbers, and is exactly that."""
    spec = client.get("/openapi.json").json
    declared = spec["paths"]["/v1/users"]["get"]["responses"]["200"]["headers"]["X-Pagination"]
    assert declared["schema"]["type"] == "string" and declared["required"] is True
    response = client.get("/v1/users?page_size=2&page=2", headers=admin)
    page = json.loads(response.headers["X-Pagination"])
    assert isinstance(page.pop("next_after"), str)  # users page by cursor too (docs/api.md)
    assert page == {
        "total": 7,
        "total_pages": 4,
        "first_page": 1,
        "last_page": 4,
        "page": 2,
        "previous_page": 1,
        "next_page": 3,
    }


def test_the_body_limit_is_a_setting(database_url, clock):
    """POLICYD_MAX_BODY_BYTES sets the limit: a 3 KB body with a 2 KB limit is a 413, for
    whoever sends it (the request pipeline refuses it by its length, before authentication,
    and never reads it)."""
    from policyd.api import create_app

    small = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": "",
            "POLICYD_CLOCK": clock,
            "POLICYD_MAX_BODY_BYTES": "2048",
        }
    )
    try:
        body = b'{"package": "' + b"p" * 3000 + b'"}'
        response = send(small.test_client(), "post", "/v1/requests", {}, body)
        assert_error(response, 413, "body")  # no token: the limit comes first
        with components(small).database.session() as session:
            from policyd.services.actor import SYSTEM
            from policyd.services.tokens import TokenService

            _, plain = TokenService(session).create(SYSTEM, "ada", "user", now=clock())
        headers = {"Authorization": f"Bearer {plain}"}
        response = send(small.test_client(), "post", "/v1/requests", headers, body)
        assert_error(response, 413, "body")
        assert "2048 bytes" in response.json["message"]
    finally:
        components(small).decision_log.close()
        components(small).runtime.close()
        components(small).database.dispose()
