"""Connections of one `ldap` connector instance: opened (with TLS), bound, pooled, and their
result codes and ldap3 errors turned into ConnectorErrors."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from policyd.connectors.base import ConnectorError
from policyd.connectors.ldap.protocol import (
    NETWORK_ERRORS,
    SUCCESS,
    TRANSIENT,
    LDAPExceptionError,
    ldap3,
)
from policyd.connectors.ldap.settings import LdapSettings

T = TypeVar("T")


class ResultError(ConnectorError):
    """The server answered an operation with a result code we do not accept: `code`."""

    def __init__(self, message: str, code: int, *, retryable: bool):
        super().__init__(message, retryable=retryable)
        self.code = code


class Pool:
    """Bound connections, each used by one thread at a time, so a connector is safe to share
    between worker threads."""

    def __init__(self, name: str, settings: LdapSettings):
        self.name = name
        self.settings = settings
        self._tls = None
        if settings.use_ssl or settings.start_tls:
            context = ssl.create_default_context(cafile=settings.ca_file)
            self._tls = _Tls(context, settings.host)
        self._idle: list[ldap3.Connection] = []
        self._lock = threading.Lock()

    def call(self, operation: Callable[[ldap3.Connection], T], *, fresh: bool = False) -> T:
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

    def check(self, conn: ldap3.Connection, action: str, *accepted: int) -> int:
        """The operation's result code if it is success or `accepted`; else ConnectorError."""
        result = conn.result or {}
        code = result.get("result", -1)
        if code == SUCCESS or code in accepted:
            return code
        detail = result.get("message") or ""
        message = f"{action}: {result.get('description')} ({code})"
        message = f"{message}: {detail}" if detail else message
        raise ResultError(self._named(message), code, retryable=code in TRANSIENT)

    def error(self, message: str, retryable: bool) -> ConnectorError:
        return ConnectorError(self._named(message), retryable=retryable)

    def _named(self, message: str) -> str:
        return f"ldap connector {self.name!r}: {message}"

    def close(self) -> None:
        """Unbind the pooled connections (a later call opens new ones)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            close_connection(conn)

    def _run(self, conn: ldap3.Connection, operation: Callable[[ldap3.Connection], T]) -> T:
        try:
            value = operation(conn)
        except ConnectorError:
            self._checkin(conn)  # the server answered: the connection is fine
            raise
        except BaseException as error:
            failure = self._failure(error, conn)  # before closing, which resets last_error
            close_connection(conn)
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
        close_connection(conn)

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
            raise_exceptions=False,  # result codes are read by check()
        )
        try:
            conn.open()
            if s.start_tls:
                conn.start_tls()  # raises LDAPStartTLSError when refused
            conn.bind()
            self.check(conn, f"bind as {s.bind_dn or 'anonymous'}")
        except BaseException as error:
            failure = self._failure(error, conn, opening=True)
            close_connection(conn)
            if failure is not None:
                raise failure from error
            raise
        return conn

    def _failure(
        self, error: BaseException, conn: ldap3.Connection, *, opening: bool = False
    ) -> ConnectorError | None:
        """`error` as a ConnectorError if it is one of ldap3's; while `opening` (only ldap3's
        code runs), any error: ldap3's decoder raises KeyError, IndexError, ... on an answer
        that is not LDAP (another service on the port, a socket connected to itself)."""
        where = f"{self.settings.host}:{self.settings.port}"
        if not isinstance(error, LDAPExceptionError):
            if not opening or not isinstance(error, Exception) or isinstance(error, ConnectorError):
                return None  # ours (the bind's result, checked), or not ldap3's to explain
            reason = f"{type(error).__name__}: {error}"
            return self.error(f"{where}: the answer is not LDAP ({reason})", retryable=True)
        detail = conn.last_error or str(error)  # str(error) is a nest of tuples for some
        # ldap3 mixes the original exception's type into its own: a certificate the server
        # presents and we do not trust is a setup problem, not an outage.
        retryable = isinstance(error, NETWORK_ERRORS) and not isinstance(
            error, ssl.SSLCertVerificationError
        )
        return self.error(f"{where}: {detail}", retryable)


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


def close_connection(conn: ldap3.Connection) -> None:
    with suppress(LDAPExceptionError, OSError):  # the server may have dropped it already
        conn.unbind()
    # ldap3 leaves the socket open when connecting or unbinding fails.
    if conn.socket is not None:
        conn.socket.close()
