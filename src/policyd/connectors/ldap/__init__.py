"""The `ldap` connector type: group membership in an LDAP directory, through ldap3.

Split by concern: `settings` (validated settings, the users' DN template), `pool`
(connections: TLS, binding, pooling, errors), `connector` (the operations), `protocol`
(ldap3 and the result codes)."""

from __future__ import annotations

from policyd.connectors.ldap.connector import LdapConnector, check_resource, create
from policyd.connectors.ldap.settings import LdapSettings, UserDnTemplate

__all__ = ["LdapConnector", "LdapSettings", "UserDnTemplate", "check_resource", "create"]
