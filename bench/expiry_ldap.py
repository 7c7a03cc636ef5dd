"""bench/expiry.py --target ldap: a throwaway slapd (the tests' support code) holding one group
whose members the expiring assignments granted, and the `ldap` connector instance for it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.connectors.ldap_server import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS,
    MODULE_DIRS,
    PEOPLE,
    SCHEMA_DIRS,
    SUFFIX,
    Slapd,
    _find,
    ldap3,
    slapd_binary,
)

from policyd.connectors.config import InstanceConfig

CONNECTOR = "ldap"
GROUP = "Bench.Readers"
RESOURCE = f"group:{GROUP}"
GROUP_DN = f"cn={GROUP},{GROUPS}"
PASSWORD_VARIABLE = "BENCH_LDAP_PASSWORD"
CHUNK = 10_000  # members added per modify


def member_dn(user_id: str) -> str:
    return f"uid={user_id},{PEOPLE}"


@contextmanager
def running_slapd(index: bool = False) -> Iterator[Slapd]:
    """A slapd with the base entries, started as the tests start theirs, stopped after.

    Changed from the tests' configuration as a production server with groups of 100,000
    members would run: durable writes (no `dbnosync`: each modify is synced to disk), a
    larger map (each modify rewrites the whole group entry) and `sortvals member`, which keeps
    the values sorted so that a delete finds each of them without a scan of the list. With
    `index`, also `index member eq` (as directories that look groups up by member have).
    """
    binary = slapd_binary()
    schemas = _find(SCHEMA_DIRS, "inetorgperson.schema")
    if binary is None or schemas is None:
        raise SystemExit("--target ldap needs slapd (apt-get install slapd)")
    with tempfile.TemporaryDirectory(prefix="policyd-bench-slapd-") as tmp:
        server = Slapd(Path(tmp), binary, schemas, _find(MODULE_DIRS, "back_mdb.so"))
        config = server.config.read_text(encoding="utf-8")
        config = config.replace("maxsize 33554432", "maxsize 8589934592")
        config = config.replace("\ndbnosync\n", "\n" + ("index member eq\n" if index else ""))
        config = config.replace("database mdb", "sortvals member\n\ndatabase mdb", 1)
        server.config.write_text(config, encoding="utf-8")
        server.start()
        try:
            server.add(SUFFIX, ["dcObject", "organization"], o="Example", dc="example")
            for ou in ("people", "groups"):
                server.add(f"ou={ou},{SUFFIX}", "organizationalUnit", ou=ou)
            yield server
        finally:
            server.stop()


def cpu_seconds(server: Slapd) -> float:
    """The CPU time (user + system) slapd has used so far, from /proc."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fill_group(server: Slapd, user_ids: Iterator[str]) -> None:
    """Create the group holding every user of `user_ids` (CHUNK per modify)."""
    conn = server.admin()
    try:
        batch: list[str] = []
        created = False
        for user_id in user_ids:
            batch.append(member_dn(user_id))
            if len(batch) == CHUNK:
                created = _add(conn, batch, created)
                batch = []
        if batch or not created:
            _add(conn, batch, created)
    finally:
        conn.unbind()


def _add(conn: ldap3.Connection, members: list[str], created: bool) -> bool:
    if not created:  # the rootdn stays a member: groupOfNames needs one when the rest go
        ok = conn.add(GROUP_DN, "groupOfNames", {"cn": GROUP, "member": [ADMIN_DN, *members]})
    else:
        ok = conn.modify(GROUP_DN, {"member": [(ldap3.MODIFY_ADD, members)]})
    if not ok:
        raise RuntimeError(f"cannot fill {GROUP_DN}: {conn.result}")
    return True


def members_left(url: str) -> int:
    """How many members of the group are bench users (read as the rootdn)."""
    server = ldap3.Server(url, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, ADMIN_DN, ADMIN_PASSWORD, auto_bind=True)
    try:
        conn.search(GROUP_DN, "(objectClass=*)", ldap3.BASE, attributes=["member"])
        values = conn.response[0]["attributes"].get("member", []) if conn.response else []
        return sum(1 for value in values if value.startswith("uid=bench-user-"))
    finally:
        conn.unbind()


def instance(url: str) -> InstanceConfig:
    """The `ldap` connector instance the workers revoke through (bound as the rootdn)."""
    return InstanceConfig(
        CONNECTOR,
        "ldap",
        settings={
            "url": url,
            "user_dn": f"uid={{user_id}},{PEOPLE}",
            "group_base": GROUPS,
            "bind_dn": ADMIN_DN,
            "check_user": False,
            "timeout": 120,
        },
        secrets={"password": PASSWORD_VARIABLE},
    )


ENVIRON = {PASSWORD_VARIABLE: ADMIN_PASSWORD}
