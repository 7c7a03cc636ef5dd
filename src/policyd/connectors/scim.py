"""The `scim` connector: membership of SCIM 2.0 groups (RFC 7643, RFC 7644) over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx

from policyd.connectors.base import Connector, ConnectorContext, ConnectorError, Target
from policyd.plugins import unknown_settings

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MEDIA_TYPE = "application/scim+json"
LOOKUP_ATTRIBUTES = {"userName": "userName", "email": "emails.value"}
SETTINGS = frozenset({"url", "user_lookup", "timeout", "connect_timeout"})
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
# Besides 5xx: the server asks us to come back later (RFC 9110 §15.5.9, RFC 6585 §4).
RETRYABLE_STATUSES = frozenset({408, 429})
PATCH_MEMBERS = 100  # members added or removed per PATCH by grant_many and revoke_many


class ScimConnector:
    """Grants a SCIM group by adding the user to its `members` with PATCH.

    Resources are `group:<displayName>` or `id:<scim id>`. One instance is safe to share
    between threads: its only state is an `httpx.Client`, whose connection pool is.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        token: str | None = None,
        user_lookup: str = "userName",
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ):
        self.name = name
        self.user_lookup = user_lookup
        headers = {"Accept": f"{MEDIA_TYPE}, application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
        )

    def grant(self, target: Target) -> None:
        group_id = self._group_id(target.resource)
        user_id = self._user_id(target)
        if user_id is None:
            raise self._no_user(target)
        self._patch_group(group_id, _members_operation([user_id], grant=True))

    def revoke(self, target: Target) -> None:
        group_id = self._group_id(target.resource)
        user_id = self._user_id(target)
        if user_id is None:
            return  # a user the server does not know is in no group
        self._patch_group(group_id, _members_operation([user_id], grant=False), absent_ok=True)

    def grant_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Grant many targets with one PATCH per group and 100 members (mass delivery)."""
        return self._bulk(targets, grant=True)

    def revoke_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Revoke many targets with one PATCH per group and 100 members (mass expiry)."""
        return self._bulk(targets, grant=False)

    def _bulk(self, targets: Sequence[Target], *, grant: bool) -> list[ConnectorError | None]:
        """Look each group and each user up once, then change each group with one PATCH per
        `PATCH_MEMBERS` members. A PATCH is applied whole or not at all (RFC 7644 §3.5.2), so
        a group whose PATCH fails is done member by member and each target gets its own
        outcome, as with grant and revoke. A retryable error (the server unreachable, busy)
        ends the call: every target not done yet gets it, instead of waiting out a timeout
        each."""
        errors: list[ConnectorError | None] = [None] * len(targets)
        settled: set[int] = set()
        lookups: dict[Any, str | ConnectorError | None] = {}  # each group and user once
        changes: dict[str, list[tuple[int, str]]] = {}  # group id -> (target index, user id)
        try:
            for index, target in enumerate(targets):
                try:
                    resource = ("group", target.resource)
                    group_id = _once(lookups, resource, partial(self._group_id, target.resource))
                    # A user without the lookup attribute is an error naming that user.
                    key = ("user", self._user_key(target) or ("unnamed", target.user_id))
                    user_id = _once(lookups, key, partial(self._user_id, target))
                    if user_id is None and grant:
                        raise self._no_user(target)
                except ConnectorError as error:
                    if error.retryable:
                        raise
                    errors[index] = error
                    settled.add(index)
                    continue
                if user_id is None:
                    settled.add(index)  # revoke: a user the server does not know is in no group
                    continue
                changes.setdefault(str(group_id), []).append((index, user_id))
            for group_id, members in changes.items():
                for start in range(0, len(members), PATCH_MEMBERS):
                    chunk = members[start : start + PATCH_MEMBERS]
                    for index, error in self._patch_members(group_id, chunk, grant).items():
                        errors[index] = error
                    settled.update(index for index, _ in chunk)
        except ConnectorError as error:  # retryable: what is not done waits for a retry
            for index in range(len(targets)):
                if index not in settled:
                    errors[index] = error
        return errors

    def _patch_members(
        self, group_id: str, members: list[tuple[int, str]], grant: bool
    ) -> dict[int, ConnectorError]:
        """Add or remove `members` (target index, user id) with one PATCH, else one by one;
        the targets that failed, by index. Raises a retryable error as it comes."""
        ids = list(dict.fromkeys(user_id for _, user_id in members))
        try:
            self._patch_group(group_id, _members_operation(ids, grant), absent_ok=not grant)
            return {}
        except ConnectorError as error:
            if error.retryable:
                raise
        failed: dict[int, ConnectorError] = {}
        for index, user_id in members:
            try:
                operation = _members_operation([user_id], grant)
                self._patch_group(group_id, operation, absent_ok=not grant)
            except ConnectorError as error:
                if error.retryable:
                    raise
                failed[index] = error
        return failed

    def members(self, resource: str) -> set[str]:
        """The userName of every user that is a direct member of the group."""
        group_id = self._group_id(resource)
        group = self._call("GET", f"/Groups/{_segment(group_id)}", params={"attributes": "members"})
        user_names = set()
        for member in group.get("members") or []:
            if not isinstance(member, dict) or not member.get("value"):
                continue
            if member.get("type") == "Group":
                continue  # nested groups are not people; policyd grants direct membership
            # `display` is often the displayName, not the userName: ask for the user.
            user = self._call(
                "GET",
                f"/Users/{_segment(member['value'])}",
                params={"attributes": "userName"},
                missing_ok=True,
            )
            if user is not None and user.get("userName"):
                user_names.add(user["userName"])
        return user_names

    def health(self) -> None:
        config = self._call("GET", "/ServiceProviderConfig")
        if (config.get("patch") or {}).get("supported") is False:
            raise self._error("the server does not support PATCH", retryable=False)
        # Many servers (scim2-server among them) serve /ServiceProviderConfig without
        # authentication, so it cannot tell a wrong or expired token; a small search can.
        self._call("GET", "/Groups", params={"count": "1", "attributes": "id"})

    def close(self) -> None:
        """Close the HTTP connections (the instance is unusable afterwards)."""
        self._client.close()

    def _group_id(self, resource: str) -> str:
        kind, _, value = resource.partition(":")
        if kind == "id" and value:
            return value
        if kind != "group" or not value:
            raise self._error(
                f"SCIM resources are group:<displayName> or id:<scim id>, not {resource!r}",
                retryable=False,
            )
        found = self._search("/Groups", f"displayName eq {_filter_value(value)}", "id,displayName")
        if len(found) > 1:
            # displayName is not case-exact (RFC 7643 §4.2), so several groups may match.
            found = [group for group in found if group.get("displayName") == value]
            if len(found) != 1:
                raise self._error(
                    f"several SCIM groups match displayName {value!r}", retryable=False
                )
        if not found:
            raise self._error(f"no SCIM group with displayName {value!r}", retryable=False)
        return str(found[0]["id"])

    def _user_key(self, target: Target) -> str | None:
        return target.email if self.user_lookup == "email" else target.user_id

    def _user_id(self, target: Target) -> str | None:
        """The SCIM id of the target's user, or None if the server has no such user."""
        key = self._user_key(target)
        if not key:
            raise self._error(
                f"user {target.user_id!r} has no {self.user_lookup} to look up", retryable=False
            )
        attribute = LOOKUP_ATTRIBUTES[self.user_lookup]
        found = self._search("/Users", f"{attribute} eq {_filter_value(key)}", "id,userName")
        if len(found) > 1:
            raise self._error(f"several SCIM users match {attribute} {key!r}", retryable=False)
        return str(found[0]["id"]) if found else None

    def _search(self, endpoint: str, filter_: str, attributes: str) -> list[dict[str, Any]]:
        params = {"filter": filter_, "attributes": attributes}
        found = self._call("GET", endpoint, params=params).get("Resources") or []
        if not isinstance(found, list) or not all(isinstance(r, dict) and "id" in r for r in found):
            raise self._error(f"GET {endpoint}: not a SCIM list response", retryable=False)
        return found

    def _patch_group(
        self, group_id: str, operation: dict[str, Any], *, absent_ok: bool = False
    ) -> None:
        body = {"schemas": [PATCH_OP], "Operations": [operation]}
        self._call("PATCH", f"/Groups/{_segment(group_id)}", body=body, no_target_ok=absent_ok)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        missing_ok: bool = False,
        no_target_ok: bool = False,
    ) -> Any:
        """The JSON body of a successful response ({} when empty).

        `missing_ok` turns a 404 into None; `no_target_ok` turns a 400 `noTarget` (a remove
        whose filter matched nothing, RFC 7644 §3.5.2.2) into {}.
        """
        what = f"{method} {path}"
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": MEDIA_TYPE} if content is not None else None
        try:
            response = self._client.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.TimeoutException as err:
            raise self._error(f"{what}: timed out ({err})", retryable=True) from err
        except httpx.TransportError as err:
            raise self._error(f"{what}: {type(err).__name__}: {err}", retryable=True) from err
        status = response.status_code
        payload = _json_or_none(response)
        if status == 404 and missing_ok:
            return None
        if status == 400 and no_target_ok and _scim_type(payload) == "noTarget":
            return {}
        if status >= 400:
            raise self._error(
                f"{what}: HTTP {status}{_detail(payload)}",
                retryable=status >= 500 or status in RETRYABLE_STATUSES,
            )
        if not response.content:
            return {}
        if not isinstance(payload, dict):
            raise self._error(f"{what}: HTTP {status} without a SCIM JSON body", retryable=False)
        return payload

    def _no_user(self, target: Target) -> ConnectorError:
        return self._error(f"no SCIM user {self._user_key(target)!r}", retryable=False)

    def _error(self, message: str, *, retryable: bool) -> ConnectorError:
        return ConnectorError(f"scim connector {self.name!r}: {message}", retryable=retryable)


def _once(
    lookups: dict[Any, str | ConnectorError | None], key: Any, lookup: Callable[[], str | None]
) -> str | None:
    """`lookup()` the first time `key` comes up, its result or non-retryable error
    remembered for the rest of a bulk call; a retryable error is raised and not remembered."""
    if key not in lookups:
        try:
            lookups[key] = lookup()
        except ConnectorError as error:
            if error.retryable:
                raise
            lookups[key] = error
    found = lookups[key]
    if isinstance(found, ConnectorError):
        raise found
    return found


def _members_operation(user_ids: list[str], grant: bool) -> dict[str, Any]:
    """The PATCH operation that adds the users to a group's members, or removes them.

    Adding a value the attribute holds already changes nothing (RFC 7644 §3.5.2.1); a remove
    whose filter matches no member is the `noTarget` error that revoke treats as done.
    """
    if grant:
        return {"op": "add", "path": "members", "value": [{"value": i} for i in user_ids]}
    matches = " or ".join(f"value eq {_filter_value(user_id)}" for user_id in user_ids)
    return {"op": "remove", "path": f"members[{matches}]"}


def _filter_value(value: str) -> str:
    """A filter's compValue: a JSON string (RFC 7644 §3.4.2.2), so quotes are escaped."""
    return json.dumps(value, ensure_ascii=False)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _scim_type(payload: Any) -> str | None:
    return payload.get("scimType") if isinstance(payload, dict) else None


def _detail(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    parts = [str(payload[key]) for key in ("scimType", "detail") if payload.get(key)]
    return f": {'; '.join(parts)}" if parts else ""


def _seconds(settings: Mapping[str, Any], key: str, default: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"setting {key!r} must be a positive number of seconds")
    return float(value)


def _connector(context: ConnectorContext) -> ScimConnector:
    settings = context.settings
    if problem := unknown_settings(settings, SETTINGS):
        raise ValueError(problem)
    url = settings.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ValueError("setting 'url' must be the SCIM base URL (http:// or https://)")
    user_lookup = settings.get("user_lookup", "userName")
    if user_lookup not in LOOKUP_ATTRIBUTES:
        raise ValueError(
            f"setting 'user_lookup' must be one of {', '.join(LOOKUP_ATTRIBUTES)},"
            f" not {user_lookup!r}"
        )
    return ScimConnector(
        context.name,
        url,
        token=context.secrets.get("token"),
        user_lookup=user_lookup,
        timeout=_seconds(settings, "timeout", DEFAULT_TIMEOUT),
        connect_timeout=_seconds(settings, "connect_timeout", DEFAULT_CONNECT_TIMEOUT),
    )


def create(context: ConnectorContext) -> Connector:
    """A `scim` connector configured by `context`.

    Raises:
        ConnectorError: (not retryable) the settings are invalid.
    """
    try:
        return _connector(context)
    except ValueError as err:
        raise ConnectorError(f"scim connector {context.name!r}: {err}", retryable=False) from None


def check_resource(resource: str, role: str) -> str | None:
    """Publish-time check: SCIM resources are group:<displayName> or id:<scim id>."""
    kind, _, value = resource.partition(":")
    if kind not in ("group", "id") or not value:
        return f"SCIM resources are group:<displayName> or id:<scim id>, not {resource!r}"
    return None


create.check_resource = check_resource  # type: ignore[attr-defined]
