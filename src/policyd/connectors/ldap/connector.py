"""The `ldap` connector: grants and revokes group membership, one modify per group in bulk."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence

from policyd.connectors.base import ConnectorContext, ConnectorError, Target
from policyd.connectors.ldap.pool import Pool, ResultError
from policyd.connectors.ldap.protocol import (
    INSUFFICIENT_ACCESS_RIGHTS,
    INVALID_DN_SYNTAX,
    NO_SUCH_ATTRIBUTE,
    NO_SUCH_OBJECT,
    OBJECT_CLASS_VIOLATION,
    PERMISSIVE_MODIFY,
    REFERRAL,
    UNAVAILABLE_CRITICAL_EXTENSION,
    VALUE_EXISTS,
    LDAPInvalidDnError,
    escape_rdn,
    ldap3,
    matched_values,
    parse_dn,
)
from policyd.connectors.ldap.settings import LdapSettings

GROUP_PREFIX = "group:"
LOCKED_FOREVER = "000001010000Z"  # ppolicy: locked until an administrator unlocks the account
_PLACEHOLDER_GONE = (NO_SUCH_ATTRIBUTE, OBJECT_CLASS_VIOLATION)  # absent, or needed after all
# Answers to a modify of a group that concern the group entry, not one of the values: when a
# bulk revoke gets one, each of the group's targets gets it too, without a modify of its own.
# A server refuses the permissive modify control, or takes it and ignores it.
_NOT_PERMISSIVE = (UNAVAILABLE_CRITICAL_EXTENSION, NO_SUCH_ATTRIBUTE)
_GROUP_WIDE = frozenset({REFERRAL, NO_SUCH_OBJECT, INVALID_DN_SYNTAX, INSUFFICIENT_ACCESS_RIGHTS})


def create(context: ConnectorContext) -> LdapConnector:
    """An `ldap` connector configured by `context` (settings documented in docs/connectors/ldap.md).

    Raises:
        ConnectorError: the settings are invalid (not retryable).
    """
    try:
        return LdapConnector(context.name, LdapSettings.load(context.settings, context.secrets))
    except (LDAPInvalidDnError, ValueError, TypeError, ssl.SSLError) as error:
        raise ConnectorError(f"ldap connector {context.name!r}: {error}", retryable=False) from None


class LdapConnector:
    """Grants and revokes membership of LDAP groups.

    Connections are pooled: each is used by one thread at a time, so the connector is safe to
    share between worker threads. Every operation is idempotent, which makes retrying it on a
    fresh connection (after the server dropped an idle one) safe.
    """

    def __init__(self, name: str, settings: LdapSettings):
        self.name = name
        self.settings = settings
        self._pool = Pool(name, settings)
        self._call = self._pool.call
        self._check = self._pool.check
        self._error = self._pool.error
        self._permissive = True  # until the server refuses the permissive modify control

    def grant(self, target: Target) -> None:
        group, user = self._group_dn(target), self._user_dn(target)
        attribute, placeholder = self.settings.member_attribute, self.settings.empty_group_member

        def add(conn: ldap3.Connection) -> None:
            if self.settings.check_user:
                conn.search(user, "(objectClass=*)", ldap3.BASE, attributes=["1.1"])
                self._check(conn, f"read user {user}")
            conn.modify(group, {attribute: [(ldap3.MODIFY_ADD, [user])]})
            if self._check(conn, f"add {user} to {group}", VALUE_EXISTS) == VALUE_EXISTS:
                return
            if placeholder is not None:
                # The group has a real member now; a placeholder we may have left can go.
                conn.modify(group, {attribute: [(ldap3.MODIFY_DELETE, [placeholder])]})
                self._check(conn, f"drop placeholder of {group}", *_PLACEHOLDER_GONE)

        self._call(add)

    def revoke(self, target: Target) -> None:
        group, user = self._group_dn(target), self._user_dn(target)
        attribute, placeholder = self.settings.member_attribute, self.settings.empty_group_member

        def delete(conn: ldap3.Connection) -> None:
            conn.modify(group, {attribute: [(ldap3.MODIFY_DELETE, [user])]})
            action = f"remove {user} from {group}"
            code = self._check(conn, action, NO_SUCH_ATTRIBUTE, OBJECT_CLASS_VIOLATION)
            if code != OBJECT_CLASS_VIOLATION:
                return
            if placeholder is None:
                raise self._error(
                    f"cannot remove the last member of {group}: its object class requires one;"
                    " set empty_group_member to keep a placeholder",
                    False,
                )
            # One modify is atomic: the group is never without a member.
            changes = [(ldap3.MODIFY_DELETE, [user]), (ldap3.MODIFY_ADD, [placeholder])]
            conn.modify(group, {attribute: changes})
            self._check(conn, f"{action} (leaving a placeholder)", NO_SUCH_ATTRIBUTE)

        self._call(delete)

    def grant_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Grant many targets with one modify per group (mass delivery)."""
        return self._bulk(targets, self._add_all, self.grant)

    def revoke_many(self, targets: Sequence[Target]) -> list[ConnectorError | None]:
        """Revoke many targets with one modify per group (mass expiry)."""
        return self._bulk(targets, self._remove_all, self.revoke, _fails_whole_group)

    def _bulk(
        self,
        targets: Sequence[Target],
        apply: Callable[[ldap3.Connection, str, list[Target]], None],
        single: Callable[[Target], None],
        whole_group: Callable[[ConnectorError], bool] = lambda error: False,
    ) -> list[ConnectorError | None]:
        """Apply `apply` to each group's targets at once. A group whose one modify fails (a
        user who does not exist, the last member of a group, a member changed meanwhile) is
        done target by target, so each target gets its own outcome, as with `single`; unless
        `whole_group` says the failure is the group's (it is missing, the server is down):
        then each of its targets fails with it."""
        errors: list[ConnectorError | None] = [None] * len(targets)
        groups: dict[str, list[int]] = {}
        for index, target in enumerate(targets):
            try:
                groups.setdefault(self._group_dn(target), []).append(index)
            except ConnectorError as error:
                errors[index] = error
        for group, indexes in groups.items():
            members = [targets[index] for index in indexes]
            try:
                self._call(lambda conn, g=group, m=members: apply(conn, g, m))
            except ConnectorError as error:
                if whole_group(error):
                    for index in indexes:
                        errors[index] = error
                    continue
                for index in indexes:
                    try:
                        single(targets[index])
                    except ConnectorError as error:
                        errors[index] = error
        return errors

    def _read_members(
        self, conn: ldap3.Connection, group: str, only: list[str] | None = None
    ) -> list[str]:
        """The group's members as the server holds them; with `only`, just those of them
        (matchedValues, so that a group of 100,000 members is not read whole for a few; a
        server without the control sends them all)."""
        attribute = self.settings.member_attribute
        controls = [matched_values(attribute, only)] if only else None
        conn.search(group, "(objectClass=*)", ldap3.BASE, attributes=[attribute], controls=controls)
        self._check(conn, f"read {group}")
        entries = [r for r in conn.response or () if r.get("type") == "searchResEntry"]
        return list(entries[0]["attributes"].get(attribute, [])) if entries else []

    def _add_all(self, conn: ldap3.Connection, group: str, targets: list[Target]) -> None:
        attribute, placeholder = self.settings.member_attribute, self.settings.empty_group_member
        template = self.settings.user_dn
        if self.settings.check_user:
            for target in targets:
                user = self._user_dn(target)
                conn.search(user, "(objectClass=*)", ldap3.BASE, attributes=["1.1"])
                self._check(conn, f"read user {user}")
        current = self._read_members(conn, group)
        present = {template.user_id(dn) for dn in current}
        missing = list(dict.fromkeys(t.user_id for t in targets if t.user_id not in present))
        if missing:
            users = [template.dn(user_id) for user_id in missing]
            conn.modify(group, {attribute: [(ldap3.MODIFY_ADD, users)]})
            self._check(conn, f"add {len(users)} members to {group}")
        if placeholder is not None and placeholder in current:
            conn.modify(group, {attribute: [(ldap3.MODIFY_DELETE, [placeholder])]})
            self._check(conn, f"drop placeholder of {group}", *_PLACEHOLDER_GONE)

    def _remove_all(self, conn: ldap3.Connection, group: str, targets: list[Target]) -> None:
        users = list(dict.fromkeys(self._user_dn(target) for target in targets))
        if self._permissive:
            if self._delete_permissively(conn, group, users):
                return
            self._permissive = False  # this server refuses the control: read before deleting
        conn.modify(group, {self.settings.member_attribute: [(ldap3.MODIFY_DELETE, users)]})
        action = f"remove {len(users)} members from {group}"
        if self._check(conn, action, NO_SUCH_ATTRIBUTE) == NO_SUCH_ATTRIBUTE:
            self._delete_present(conn, group, targets, users)

    def _delete_permissively(self, conn: ldap3.Connection, group: str, users: list[str]) -> bool:
        """Delete `users` from `group` in one modify under permissive modify, so that those
        already gone are no error and nothing is read first. False when the server does not
        honour the control (and changed nothing)."""
        attribute, placeholder = self.settings.member_attribute, self.settings.empty_group_member
        action = f"remove {len(users)} members from {group}"
        conn.modify(
            group, {attribute: [(ldap3.MODIFY_DELETE, users)]}, controls=[PERMISSIVE_MODIFY]
        )
        code = self._check(conn, action, *_NOT_PERMISSIVE, OBJECT_CLASS_VIOLATION)
        if code in _NOT_PERMISSIVE:
            return False
        if code == OBJECT_CLASS_VIOLATION:
            if placeholder is None:  # done one by one: only the last member's revoke fails
                raise self._error(f"{action}: it would be left without a member", False)
            # One modify is atomic: the group is never without a member.
            changes = [(ldap3.MODIFY_DELETE, users), (ldap3.MODIFY_ADD, [placeholder])]
            conn.modify(group, {attribute: changes}, controls=[PERMISSIVE_MODIFY])
            self._check(conn, f"{action} (leaving a placeholder)")
        return True

    def _delete_present(
        self, conn: ldap3.Connection, group: str, targets: list[Target], users: list[str]
    ) -> None:
        """Without permissive modify: delete the values as the server holds them, read
        first (deleting a value that is absent would fail the whole modify)."""
        attribute = self.settings.member_attribute
        wanted = {target.user_id for target in targets}
        template = self.settings.user_dn
        current = self._read_members(conn, group, only=users)
        present = [dn for dn in current if template.user_id(dn) in wanted]
        if present:
            conn.modify(group, {attribute: [(ldap3.MODIFY_DELETE, present)]})
            self._check(conn, f"remove {len(present)} members from {group}")

    def members(self, resource: str) -> set[str]:
        group = self._resource_dn(resource)
        found = self._call(lambda conn: self._read_members(conn, group))
        ids = (self.settings.user_dn.user_id(dn) for dn in found)
        return {user_id for user_id in ids if user_id is not None}

    def health(self) -> None:
        """Bind on a new connection and read the root DSE."""

        def read_root(conn: ldap3.Connection) -> None:
            conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["namingContexts"])
            self._check(conn, "read the root DSE")

        self._call(read_root, fresh=True)

    def disable_user(self, user_id: str) -> None:
        """Lock the user's account through ppolicy's pwdAccountLockedTime."""
        user = self.settings.user_dn.dn(user_id)

        def lock(conn: ldap3.Connection) -> None:
            conn.modify(user, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, [LOCKED_FOREVER])]})
            self._check(conn, f"lock {user}")

        self._call(lock)

    def delete_user(self, user_id: str) -> None:
        """Delete the user's entry; an entry that is already gone is no error."""
        user = self.settings.user_dn.dn(user_id)

        def delete(conn: ldap3.Connection) -> None:
            conn.delete(user)
            self._check(conn, f"delete {user}", NO_SUCH_OBJECT)

        self._call(delete)

    def close(self) -> None:
        """Unbind the pooled connections (a later call opens new ones)."""
        self._pool.close()

    def _group_dn(self, target: Target) -> str:
        if target.role != "member":
            raise self._error(f"role {target.role!r} is not supported, only 'member'", False)
        return self._resource_dn(target.resource)

    def _resource_dn(self, resource: str) -> str:
        if resource.startswith(GROUP_PREFIX):
            name = resource.removeprefix(GROUP_PREFIX)
            if not name or self.settings.group_base is None:
                raise self._error(f"{resource!r} needs a name and the group_base setting", False)
            return f"cn={escape_rdn(name)},{self.settings.group_base}"
        try:
            parse_dn(resource)
        except LDAPInvalidDnError:
            raise self._error(f"{resource!r} is neither group:<name> nor a DN", False) from None
        return resource

    def _user_dn(self, target: Target) -> str:
        return self.settings.user_dn.dn(target.user_id)


def _fails_whole_group(error: ConnectorError) -> bool:
    """Whether a bulk revoke's failure fails each target of the group alike: every operation
    of `_remove_all` is on the group entry, so a missing or forbidden group fails them all,
    and a server or network down for now makes each of them be retried later."""
    if isinstance(error, ResultError):
        return error.code in _GROUP_WIDE or error.retryable
    return error.retryable  # no answer at all, after the pool's retry on a new connection


def check_resource(resource: str, role: str) -> str | None:
    """Publish-time check: LDAP resources are group:<name> or a group's DN; role member."""
    if role != "member":
        return f"role {role!r} is not supported, only 'member'"
    if resource.startswith(GROUP_PREFIX):
        return None if resource.removeprefix(GROUP_PREFIX) else "group:<name> needs a name"
    try:
        parse_dn(resource)
    except LDAPInvalidDnError:
        return f"{resource!r} is neither group:<name> nor a DN"
    return None


create.check_resource = check_resource  # type: ignore[attr-defined]
