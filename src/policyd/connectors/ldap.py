"""The `ldap` connector type: group membership in an LDAP directory, through ldap3."""

from __future__ import annotations

import math
import ssl
import string
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from policyd.connectors.base import ConnectorContext, ConnectorError, Target

with warnings.catch_warnings():
    # ldap3 2.9.1, its latest release, imports pyasn1's deprecated tagMap/typeMap aliases
    # (fixed upstream but unreleased: cannatag/ldap3#1159); the warning is not ours to act on.
    warnings.filterwarnings("ignore", r"(tag|type)Map is deprecated", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import (
        LDAPCommunicationError,
        LDAPExceptionError,
        LDAPInvalidDnError,
        LDAPResponseTimeoutError,
    )
    from ldap3.utils.dn import escape_rdn, parse_dn

T = TypeVar("T")

SETTINGS = frozenset(
    {
        "url",
        "bind_dn",
        "user_dn",
        "group_base",
        "member_attribute",
        "empty_group_member",
        "check_user",
        "start_tls",
        "ca_file",
        "connect_timeout",
        "timeout",
        "pool_size",
    }
)

USER_ID = "{user_id}"
GROUP_PREFIX = "group:"
LOCKED_FOREVER = "000001010000Z"  # ppolicy: locked until an administrator unlocks the account

SUCCESS = 0
NO_SUCH_ATTRIBUTE = 16  # revoking a value that is not there
VALUE_EXISTS = 20  # granting a value that is already there
NO_SUCH_OBJECT = 32
OBJECT_CLASS_VIOLATION = 65  # e.g. the last member of a groupOfNames
# Result codes that say "not now" rather than "never": timeLimitExceeded, adminLimitExceeded,
# busy, unavailable, other (slapd's answer to internal errors such as a full database).
TRANSIENT = frozenset({3, 11, 51, 52, 80})
# Raised by ldap3 when the server cannot be reached, drops the connection or does not answer.
NETWORK_ERRORS = (LDAPCommunicationError, LDAPResponseTimeoutError)


def create(context: ConnectorContext) -> LdapConnector:
    """An `ldap` connector configured by `context` (settings documented in docs/connectors/ldap.md).

    Raises:
        ConnectorError: the settings are invalid (not retryable).
    """
    try:
        return LdapConnector(context.name, LdapSettings.load(context.settings, context.secrets))
    except (LDAPInvalidDnError, ValueError, TypeError, ssl.SSLError) as error:
        raise ConnectorError(f"ldap connector {context.name!r}: {error}", retryable=False) from None


@dataclass(frozen=True)
class LdapSettings:
    host: str
    port: int
    use_ssl: bool
    user_dn: UserDnTemplate
    bind_dn: str | None = None
    password: str | None = None
    group_base: str | None = None
    member_attribute: str = "member"
    empty_group_member: str | None = ""  # the empty DN; None: never leave a placeholder
    check_user: bool = True
    start_tls: bool = False
    ca_file: str | None = None
    connect_timeout: float = 5.0
    timeout: int = 10  # seconds to wait for an answer (ldap3 wants whole seconds)
    pool_size: int = 4

    @classmethod
    def load(cls, settings: Mapping[str, Any], secrets: Mapping[str, str]) -> LdapSettings:
        """Validated settings.

        Raises:
            ValueError, LDAPInvalidDnError: a setting is missing, unknown or malformed.
        """
        unknown = sorted(set(settings) - SETTINGS)
        if unknown:
            known = ", ".join(sorted(SETTINGS))
            raise ValueError(f"unknown settings {', '.join(unknown)}; known: {known}")
        url = urlsplit(str(settings.get("url", "")))
        if url.scheme not in ("ldap", "ldaps") or not url.hostname:
            raise ValueError("url must be ldap://host[:port] or ldaps://host[:port]")
        if "user_dn" not in settings:
            raise ValueError("user_dn is required, e.g. uid={user_id},ou=people,dc=example,dc=org")
        bind_dn = settings.get("bind_dn") or None
        if bind_dn:
            parse_dn(bind_dn)
            if not secrets.get("password"):
                raise ValueError("bind_dn needs the secret 'password'")
        group_base = settings.get("group_base")
        if group_base is not None:
            parse_dn(group_base)
        ca_file = settings.get("ca_file")
        if ca_file is not None and not Path(ca_file).is_file():
            raise ValueError(f"ca_file {ca_file!r} is not a file")
        placeholder = settings.get("empty_group_member", "")
        if placeholder:
            parse_dn(placeholder)
        member_attribute = settings.get("member_attribute", "member")
        if not isinstance(member_attribute, str) or not member_attribute:
            raise ValueError("member_attribute must be an attribute name")
        numbers = {
            key: float(settings.get(key, default))
            for key, default in (("connect_timeout", 5), ("timeout", 10), ("pool_size", 4))
        }
        if numbers["connect_timeout"] <= 0 or numbers["timeout"] <= 0 or numbers["pool_size"] < 0:
            raise ValueError("timeouts must be positive and pool_size not negative")
        start_tls = _flag(settings, "start_tls", False)
        if start_tls and url.scheme == "ldaps":
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS from the start")
        return cls(
            host=url.hostname,
            port=url.port or (636 if url.scheme == "ldaps" else 389),
            use_ssl=url.scheme == "ldaps",
            user_dn=UserDnTemplate.parse(str(settings["user_dn"])),
            bind_dn=bind_dn,
            password=secrets.get("password") if bind_dn else None,
            group_base=group_base,
            member_attribute=member_attribute,
            empty_group_member=placeholder,
            check_user=_flag(settings, "check_user", True),
            start_tls=start_tls,
            ca_file=ca_file,
            connect_timeout=numbers["connect_timeout"],
            timeout=math.ceil(numbers["timeout"]),
            pool_size=int(numbers["pool_size"]),
        )


def _flag(settings: Mapping[str, Any], key: str, default: bool) -> bool:
    value = settings.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")
    return value


@dataclass(frozen=True)
class UserDnTemplate:
    """`uid={user_id},ou=people,...`: builds a user's DN and reads the user id back from one."""

    text: str
    types: tuple[str, ...]  # attribute type of each AVA, lower case
    values: tuple[str, ...]  # normalised value of each AVA ("" at the user id's slot)
    separators: tuple[str, ...]
    slot: int

    @classmethod
    def parse(cls, text: str) -> UserDnTemplate:
        if text.count(USER_ID) != 1:
            raise ValueError(f"user_dn must contain {USER_ID} exactly once: {text!r}")
        marker = "policyd-user-id-slot"
        avas = parse_dn(text.replace(USER_ID, marker), strip=True)
        slots = [i for i, (_, value, _) in enumerate(avas) if marker in value]
        if avas[slots[0]][1] != marker:
            raise ValueError(f"{USER_ID} must be a whole attribute value in user_dn: {text!r}")
        return cls(
            text=text,
            types=tuple(t.lower() for t, _, _ in avas),
            values=tuple("" if i == slots[0] else _normal(v) for i, (_, v, _) in enumerate(avas)),
            separators=tuple(s for _, _, s in avas),
            slot=slots[0],
        )

    def dn(self, user_id: str) -> str:
        if not user_id:
            raise ConnectorError("empty user id", retryable=False)
        return self.text.replace(USER_ID, escape_rdn(user_id))

    def user_id(self, dn: str) -> str | None:
        """The user id in `dn`, or None when `dn` is not shaped like the template."""
        try:
            avas = parse_dn(dn, strip=True)
        except LDAPInvalidDnError:
            return None
        if len(avas) != len(self.types):
            return None
        for i, (type_, value, separator) in enumerate(avas):
            if type_.lower() != self.types[i] or separator != self.separators[i]:
                return None
            if i != self.slot and _normal(value) != self.values[i]:
                return None
        return _unescape(avas[self.slot][1])


def _unescape(value: str) -> str:
    """An RFC 4514 attribute value without its escapes (`\\,` and `\\2C` both give `,`)."""
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in string.hexdigits for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            i += 1
        out += value[i].encode()
        i += 1
    return out.decode(errors="replace")


def _normal(value: str) -> str:
    # Naming attributes (uid, cn, ou, dc) compare case-insensitively and ignore repeated spaces.
    return " ".join(_unescape(value).casefold().split())


class LdapConnector:
    """Grants and revokes membership of LDAP groups.

    Connections are pooled: each is used by one thread at a time, so the connector is safe to
    share between worker threads. Every operation is idempotent, which makes retrying it on a
    fresh connection (after the server dropped an idle one) safe.
    """

    def __init__(self, name: str, settings: LdapSettings):
        self.name = name
        self.settings = settings
        self._tls = None
        if settings.use_ssl or settings.start_tls:
            context = ssl.create_default_context(cafile=settings.ca_file)
            self._tls = _Tls(context, settings.host)
        self._idle: list[ldap3.Connection] = []
        self._lock = threading.Lock()

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
        return self._bulk(targets, self._remove_all, self.revoke)

    def _bulk(
        self,
        targets: Sequence[Target],
        apply: Callable[[ldap3.Connection, str, list[Target]], None],
        single: Callable[[Target], None],
    ) -> list[ConnectorError | None]:
        """Apply `apply` to each group's targets at once. A group whose one modify fails (a
        user who does not exist, the last member of a group, a member changed meanwhile) is
        done target by target, so each target gets its own outcome, as with `single`."""
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
            except ConnectorError:
                for index in indexes:
                    try:
                        single(targets[index])
                    except ConnectorError as error:
                        errors[index] = error
        return errors

    def _read_members(self, conn: ldap3.Connection, group: str) -> list[str]:
        attribute = self.settings.member_attribute
        conn.search(group, "(objectClass=*)", ldap3.BASE, attributes=[attribute])
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
        attribute = self.settings.member_attribute
        wanted = {target.user_id for target in targets}
        template = self.settings.user_dn
        # The values as the server holds them: deleting a value that is absent would fail
        # the whole modify.
        present = [dn for dn in self._read_members(conn, group) if template.user_id(dn) in wanted]
        if present:
            conn.modify(group, {attribute: [(ldap3.MODIFY_DELETE, present)]})
            self._check(conn, f"remove {len(present)} members from {group}")

    def members(self, resource: str) -> set[str]:
        group = self._resource_dn(resource)
        attribute = self.settings.member_attribute

        def read(conn: ldap3.Connection) -> list[str]:
            conn.search(group, "(objectClass=*)", ldap3.BASE, attributes=[attribute])
            self._check(conn, f"read {group}")
            entries = [r for r in conn.response or () if r.get("type") == "searchResEntry"]
            return list(entries[0]["attributes"].get(attribute, [])) if entries else []

        ids = (self.settings.user_dn.user_id(dn) for dn in self._call(read))
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
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

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

    def _check(self, conn: ldap3.Connection, action: str, *accepted: int) -> int:
        """The operation's result code if it is success or `accepted`; else ConnectorError."""
        result = conn.result or {}
        code = result.get("result", -1)
        if code == SUCCESS or code in accepted:
            return code
        detail = result.get("message") or ""
        message = f"{action}: {result.get('description')} ({code})"
        raise self._error(f"{message}: {detail}" if detail else message, code in TRANSIENT)

    def _call(self, operation: Callable[[ldap3.Connection], T], *, fresh: bool = False) -> T:
        """Run `operation` on a pooled connection (or a new one if `fresh` or none is idle)."""
        conn = None if fresh else self._pooled()
        if conn is not None:
            try:
                return self._run(conn, operation)
            except ConnectorError as error:
                if not isinstance(error.__cause__, NETWORK_ERRORS):
                    raise
                # The server dropped the idle connection (restart, idle timeout). Operations
                # are idempotent, so running this one again on a new connection is safe.
        return self._run(self._open(), operation)

    def _run(self, conn: ldap3.Connection, operation: Callable[[ldap3.Connection], T]) -> T:
        try:
            value = operation(conn)
        except ConnectorError:
            self._checkin(conn)  # the server answered: the connection is fine
            raise
        except BaseException as error:
            failure = self._failure(error, conn)  # before closing, which resets last_error
            _close(conn)
            if isinstance(error, NETWORK_ERRORS):
                self.close()  # the other idle connections most likely died the same way
            if failure is not None:
                raise failure from error
            raise
        self._checkin(conn)
        return value

    def _pooled(self) -> ldap3.Connection | None:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
        return None

    def _checkin(self, conn: ldap3.Connection) -> None:
        with self._lock:
            if not conn.closed and len(self._idle) < self.settings.pool_size:
                self._idle.append(conn)
                return
        _close(conn)

    def _open(self) -> ldap3.Connection:
        """A new connection, bound with the configured credentials."""
        s = self.settings
        server = ldap3.Server(
            s.host,
            port=s.port,
            use_ssl=s.use_ssl,
            tls=self._tls,
            get_info=ldap3.NONE,  # no schema or root DSE reads on every connection
            connect_timeout=s.connect_timeout,
        )
        conn = ldap3.Connection(
            server,
            user=s.bind_dn,
            password=s.password,
            receive_timeout=s.timeout,
            auto_referrals=False,  # never send our credentials to a server a referral names
            raise_exceptions=False,  # result codes are read by _check
        )
        try:
            conn.open()
            if s.start_tls:
                conn.start_tls()  # raises LDAPStartTLSError when refused
            conn.bind()
            self._check(conn, f"bind as {s.bind_dn or 'anonymous'}")
        except BaseException as error:
            failure = self._failure(error, conn)
            _close(conn)
            if failure is not None:
                raise failure from error
            raise
        return conn

    def _failure(self, error: BaseException, conn: ldap3.Connection) -> ConnectorError | None:
        """`error` as a ConnectorError if it is one of ldap3's."""
        if not isinstance(error, LDAPExceptionError):
            return None
        where = f"{self.settings.host}:{self.settings.port}"
        detail = conn.last_error or str(error)  # str(error) is a nest of tuples for some
        # ldap3 mixes the original exception's type into its own: a certificate the server
        # presents and we do not trust is a setup problem, not an outage.
        retryable = isinstance(error, NETWORK_ERRORS) and not isinstance(
            error, ssl.SSLCertVerificationError
        )
        return self._error(f"{where}: {detail}", retryable)

    def _error(self, message: str, retryable: bool) -> ConnectorError:
        return ConnectorError(f"ldap connector {self.name!r}: {message}", retryable=retryable)


class _Tls(ldap3.Tls):
    """TLS whose certificate and host name checks are the ssl module's own.

    ldap3 2.9.1 checks host names with ssl.match_hostname, deprecated since Python 3.7.
    """

    def __init__(self, context: ssl.SSLContext, host: str):
        super().__init__(validate=ssl.CERT_REQUIRED)
        self.context = context  # verifies the chain and the host name (check_hostname)
        self.host = host

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(
            connection.socket, server_hostname=self.host, do_handshake_on_connect=do_handshake
        )


_PLACEHOLDER_GONE = (NO_SUCH_ATTRIBUTE, OBJECT_CLASS_VIOLATION)  # absent, or needed after all


def _close(conn: ldap3.Connection) -> None:
    with suppress(LDAPExceptionError, OSError):  # the server may have dropped it already
        conn.unbind()
    # ldap3 leaves the socket open when connecting or unbinding fails.
    if conn.socket is not None:
        conn.socket.close()


def check_resource(resource: str, role: str) -> str | None:
    """Publish-time check: LDAP resources are group:<name> or a group's DN; role member."""
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

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
