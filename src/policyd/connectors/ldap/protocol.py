"""ldap3, imported once without its deprecation noise, and the LDAP result codes we act on."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

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

SUCCESS = 0
REFERRAL = 10
UNAVAILABLE_CRITICAL_EXTENSION = 12  # a critical control the server does not know
NO_SUCH_ATTRIBUTE = 16  # revoking a value that is not there
VALUE_EXISTS = 20  # granting a value that is already there
NO_SUCH_OBJECT = 32
INVALID_DN_SYNTAX = 34
INSUFFICIENT_ACCESS_RIGHTS = 50
OBJECT_CLASS_VIOLATION = 65  # e.g. the last member of a groupOfNames
# Result codes that say "not now" rather than "never": timeLimitExceeded, adminLimitExceeded,
# busy, unavailable, other (slapd's answer to internal errors such as a full database).
TRANSIENT = frozenset({3, 11, 51, 52, 80})
# matchedValues (RFC 3876): a search returns, of a multi-valued attribute, only the values
# that match a filter. Not critical: a server without it returns them all.
MATCHED_VALUES = "1.2.826.0.1.3344810.2.3"
# Permissive modify (Active Directory's, also in OpenLDAP): deleting a value that is absent
# or adding one that is present is no error, so a modify of many values needs no read first.
# Critical: a server without it refuses the modify (unavailableCriticalExtension) rather
# than failing it for one absent value.
PERMISSIVE_MODIFY = ("1.2.840.113556.1.4.1413", True, None)
# Raised by ldap3 when the server cannot be reached, drops the connection or does not answer.
NETWORK_ERRORS = (LDAPCommunicationError, LDAPResponseTimeoutError)


def _ber(tag: int, content: bytes) -> bytes:
    """One BER element: tag, definite length, content."""
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def matched_values(attribute: str, values: Iterable[str]) -> tuple[str, bool, bytes]:
    """The matchedValues control for a search: of `attribute`, return only those of `values`
    the entry holds (as it holds them). Its value is a ValuesReturnFilter, a SEQUENCE of
    equalityMatch [3] items, each the attribute and one value (RFC 3876, section 2)."""
    name = _ber(0x04, attribute.encode("utf-8"))
    items = b"".join(_ber(0xA3, name + _ber(0x04, value.encode("utf-8"))) for value in values)
    return MATCHED_VALUES, False, _ber(0x30, items)


__all__ = [
    "INSUFFICIENT_ACCESS_RIGHTS",
    "INVALID_DN_SYNTAX",
    "NETWORK_ERRORS",
    "NO_SUCH_ATTRIBUTE",
    "NO_SUCH_OBJECT",
    "OBJECT_CLASS_VIOLATION",
    "PERMISSIVE_MODIFY",
    "REFERRAL",
    "SUCCESS",
    "TRANSIENT",
    "UNAVAILABLE_CRITICAL_EXTENSION",
    "VALUE_EXISTS",
    "LDAPExceptionError",
    "LDAPInvalidDnError",
    "escape_rdn",
    "ldap3",
    "matched_values",
    "parse_dn",
]
