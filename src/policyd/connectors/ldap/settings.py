"""The `ldap` connector's settings, validated, and the template of its users' DNs."""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from policyd.connectors.base import ConnectorError
from policyd.connectors.ldap.protocol import LDAPInvalidDnError, escape_rdn, parse_dn
from policyd.plugins import unknown_settings

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
        if problem := unknown_settings(settings, SETTINGS):
            raise ValueError(problem)
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
