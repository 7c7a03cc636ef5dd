"""A throwaway OpenLDAP server for connector tests: config, data and process live in tmp."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policyd.connectors.base import ConnectorContext
from policyd.connectors.ldap import LdapConnector, create

with warnings.catch_warnings():
    # ldap3 2.9.1 imports pyasn1's deprecated aliases (cannatag/ldap3#1159, fixed but unreleased).
    warnings.filterwarnings("ignore", r"(tag|type)Map is deprecated", DeprecationWarning)
    import ldap3
    from ldap3.utils.dn import escape_rdn

SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,ou=services,{SUFFIX}"  # may read everything, write nothing
READER_PASSWORD = "reader-secret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
USER_DN = f"uid={{user_id}},{PEOPLE}"
USERS = ("alice", "bob", "carol", "dave")
USER_PASSWORD = "user-secret"

# Where Debian (and, for the alternatives, other distributions) put the slapd package's files.
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/libexec")
SCHEMA_DIRS = ("/etc/ldap/schema", "/etc/openldap/schema")
MODULE_DIRS = ("/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap")

CONFIG = """\
include {schemas}/core.schema
include {schemas}/cosine.schema
include {schemas}/inetorgperson.schema
{modules}
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
TLSCertificateFile {root}/cert.pem
TLSCertificateKeyFile {root}/key.pem

access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by users read
    by * none

database mdb
maxsize 33554432
dbnosync
suffix "{suffix}"
rootdn "{admin_dn}"
rootpw {admin_password}
directory {root}/data

overlay ppolicy
ppolicy_default "cn=default,ou=policies,{suffix}"
"""


def _find(dirs: tuple[str, ...], name: str) -> Path | None:
    return next((Path(d) for d in dirs if (Path(d) / name).exists()), None)


def slapd_binary() -> Path | None:
    found = shutil.which("slapd") or shutil.which("slapd", path=":".join(SBIN_DIRS))
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_certificate(cert: Path, key: Path) -> None:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    public = private.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class Slapd:
    """One slapd process listening on 127.0.0.1, restartable on the same port and data."""

    def __init__(self, root: Path, binary: Path, schemas: Path, modules: Path | None):
        self.root = root
        self.binary = binary
        self.port = free_port()
        self.tls_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        (root / "data").mkdir(parents=True)
        write_certificate(root / "cert.pem", root / "key.pem")
        module_lines = (
            f"modulepath {modules}\nmoduleload back_mdb\nmoduleload ppolicy" if modules else ""
        )
        self.config = root / "slapd.conf"
        self.config.write_text(
            CONFIG.format(
                schemas=schemas,
                modules=module_lines,
                root=root,
                suffix=SUFFIX,
                admin_dn=ADMIN_DN,
                admin_password=ADMIN_PASSWORD,
            ),
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        """The server's self-signed certificate, for clients to trust."""
        return self.root / "cert.pem"

    def start(self, timeout: float = 10.0) -> None:
        log = (self.root / "slapd.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "-h",
                f"{self.url} {self.tls_url}",
                "-f",
                str(self.config),
                "-d",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = (self.root / "slapd.log").read_text(errors="replace")
                raise RuntimeError(f"slapd exited with {self.process.returncode}:\n{output}")
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"slapd did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def admin(self) -> ldap3.Connection:
        """A connection bound as the rootdn (the caller unbinds it)."""
        server = ldap3.Server(self.url, get_info=ldap3.NONE)
        return ldap3.Connection(server, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)

    def add(self, dn: str, object_class: str | list[str], **attributes: object) -> None:
        conn = self.admin()
        try:
            if not conn.add(dn, object_class, attributes):
                raise RuntimeError(f"cannot add {dn}: {conn.result}")
        finally:
            conn.unbind()

    def seed(self) -> None:
        """The base entries: people, service accounts, a password policy and a few groups."""
        self.add(SUFFIX, ["dcObject", "organization"], o="Example", dc="example")
        for ou in ("people", "groups", "services", "policies"):
            self.add(f"ou={ou},{SUFFIX}", "organizationalUnit", ou=ou)
        for uid in USERS:
            self.add_user(uid)
        self.add(READER_DN, "inetOrgPerson", cn="reader", sn="reader", userPassword=READER_PASSWORD)
        self.add(
            f"cn=default,ou=policies,{SUFFIX}",
            ["organizationalRole", "pwdPolicy"],
            cn="default",
            pwdAttribute="userPassword",
            pwdLockout="TRUE",
        )
        self.add_group(["alice"], name="Readers")

    def add_user(self, uid: str) -> str:
        """Add an inetOrgPerson under ou=people with USER_PASSWORD; returns its DN."""
        dn = USER_DN.format(user_id=escape_rdn(uid))
        self.add(dn, "inetOrgPerson", uid=uid, cn=uid, sn=uid, userPassword=USER_PASSWORD)
        return dn

    def can_bind(self, dn: str, password: str) -> bool:
        conn = ldap3.Connection(ldap3.Server(self.url, get_info=ldap3.NONE), dn, password)
        try:
            return conn.bind()
        finally:
            conn.unbind()

    def add_group(
        self,
        members: list[str],
        *,
        name: str | None = None,
        object_class: str = "groupOfNames",
        attribute: str = "member",
        extra: tuple[str, ...] = (),
    ) -> str:
        """Add a group under ou=groups holding `members` (user ids) plus `extra` DNs.

        Returns:
            The group's name (its cn), unique unless `name` is given.
        """
        name = name or f"g-{uuid.uuid4().hex[:8]}"
        values = [USER_DN.format(user_id=escape_rdn(m)) for m in members] + list(extra)
        self.add(f"cn={name},{GROUPS}", object_class, cn=name, **{attribute: values})
        return name

    def values(self, dn: str, attribute: str) -> list[str]:
        """The raw values of `attribute` on `dn`, read as the rootdn."""
        conn = self.admin()
        try:
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute])
            entry = conn.response[0]["attributes"]
            return list(entry.get(attribute, []))
        finally:
            conn.unbind()


@contextmanager
def running_slapd(root: Path) -> Iterator[Slapd]:
    """Start a seeded slapd under `root`; skip the test when slapd is not installed."""
    binary = slapd_binary()
    schemas = _find(SCHEMA_DIRS, "inetorgperson.schema")
    if binary is None or schemas is None:
        pytest.skip("slapd not installed: apt-get install slapd")
    server = Slapd(root, binary, schemas, _find(MODULE_DIRS, "back_mdb.so"))
    server.start()
    try:
        server.seed()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One seeded slapd shared by a test module (tests create their own groups)."""
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


# --- connectors bound to a running slapd (the ldap tests' `connect` fixture) ---

Connect = Callable[..., LdapConnector]


def settings_for(server: Slapd, **overrides: Any) -> dict[str, Any]:
    settings = {"url": server.url, "bind_dn": ADMIN_DN, "user_dn": USER_DN, "group_base": GROUPS}
    return {**settings, **overrides}


@pytest.fixture
def connect(slapd: Slapd) -> Iterator[Connect]:
    """Build ldap connectors (closed after the test); the default binds to `slapd` as admin."""
    made: list[LdapConnector] = []

    def _connect(password: str = ADMIN_PASSWORD, **overrides: Any) -> LdapConnector:
        context = ConnectorContext(
            "ldap-test", settings_for(slapd, **overrides), {"password": password}
        )
        connector = create(context)
        made.append(connector)
        return connector

    yield _connect
    for connector in made:
        connector.close()
