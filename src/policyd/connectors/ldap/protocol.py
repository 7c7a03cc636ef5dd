"""ldap3, imported once without its deprecation noise, and the LDAP result codes we act on."""

from __future__ import annotations

import warnings

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
NO_SUCH_ATTRIBUTE = 16  # revoking a value that is not there
VALUE_EXISTS = 20  # granting a value that is already there
NO_SUCH_OBJECT = 32
OBJECT_CLASS_VIOLATION = 65  # e.g. the last member of a groupOfNames
# Result codes that say "not now" rather than "never": timeLimitExceeded, adminLimitExceeded,
# busy, unavailable, other (slapd's answer to internal errors such as a full database).
TRANSIENT = frozenset({3, 11, 51, 52, 80})
# Raised by ldap3 when the server cannot be reached, drops the connection or does not answer.
NETWORK_ERRORS = (LDAPCommunicationError, LDAPResponseTimeoutError)

__all__ = [
    "NETWORK_ERRORS",
    "NO_SUCH_ATTRIBUTE",
    "NO_SUCH_OBJECT",
    "OBJECT_CLASS_VIOLATION",
    "SUCCESS",
    "TRANSIENT",
    "VALUE_EXISTS",
    "LDAPExceptionError",
    "LDAPInvalidDnError",
    "escape_rdn",
    "ldap3",
    "parse_dn",
]
