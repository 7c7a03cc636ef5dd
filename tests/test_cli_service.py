"""The operator's CLI: db upgrade, publish, token, directory import, serve."""

from __future__ import annotations

import json
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policyd.cli import build_server, main
from policyd.domain import UserType
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.tokens import TokenService
from policyd.services.versions import VersionService
from policyd.settings import Settings
from policyd.store import Database
from policyd.store.database import MIGRATIONS
from policyd.store.models import AuditRecord
from tests.conftest import POLICIES, ROOT, rule_file

TOKEN = re.compile(r"pd_[A-Za-z0-9_-]+")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'policyd.db'}"


@pytest.fixture
def db(runner, url: str) -> str:
    """A database URL whose schema is upgraded."""
    result = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    assert result.exit_code == 0, result.output
    return url


@contextmanager
def session_on(url: str) -> Iterator[Session]:
    database = Database(url)
    try:
        with database.session() as session:
            yield session
    finally:
        database.dispose()


def invoke(runner, url: str, *args: str, actor: str | None = "ops"):
    actor_args = ["--actor", actor] if actor else []
    return runner.invoke(main, [*args, "--database-url", url, *actor_args])


def test_db_upgrade_creates_the_schema_then_reports_it_current(runner, url):
    """A first upgrade creates the schema; a second one says it is up to date."""
    first = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    second = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert f"schema upgraded from empty to {head}" in first.output
    assert f"schema is up to date (revision {head})" in second.output


def test_database_url_comes_from_the_environment(runner, url, monkeypatch):
    """Without --database-url the command uses POLICYD_DATABASE_URL."""
    monkeypatch.setenv("POLICYD_DATABASE_URL", url)
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert url in result.output


def test_publish_without_schema_says_to_upgrade(runner, url, tmp_path):
    """Publishing to a database without tables exits 1 and names `policyd db upgrade`."""
    (tmp_path / "policyd.db").touch()
    result = invoke(runner, url, "publish", str(POLICIES), "-m", "first")
    assert result.exit_code == 1
    assert "run `policyd db upgrade` first" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "command", [["token", "create", "--principal", "bob", "--role", "user"], ["token", "list"]]
)
def test_a_command_on_a_missing_database_names_it_and_creates_nothing(
    runner, url, tmp_path, command
):
    """A command that needs the service's database stops with exit 1 naming the file it looked
    for, and leaves no empty database behind."""
    result = runner.invoke(main, [*command, "--database-url", url])
    assert result.exit_code == 1
    assert f"no policyd database at {tmp_path / 'policyd.db'}" in result.output
    assert not (tmp_path / "policyd.db").exists()


def test_the_default_database_is_found_from_any_folder(runner, tmp_path, monkeypatch):
    """Without a database setting, `db upgrade` and later commands use policyd.db under
    POLICYD_HOME, whatever the current folder."""
    monkeypatch.delenv("POLICYD_DATABASE_URL", raising=False)
    monkeypatch.setenv("POLICYD_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = runner.invoke(main, ["token", "create", "--principal", "bob", "--role", "user"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "policyd.db").exists()
    assert not list((tmp_path / "elsewhere").iterdir())


def test_publish_stores_and_activates_the_bundle(runner, db, example_bundle):
    """`policyd publish` stores the examples as the active version, audited under --actor."""
    result = invoke(runner, db, "publish", str(POLICIES), "-m", "first")
    assert result.exit_code == 0, result.output
    version_id = example_bundle.version.id
    assert f"version {version_id} is now active (before: none)" in result.output
    with session_on(db) as session:
        service = VersionService(session)
        assert service.active_id() == version_id
        version = service.get(version_id)
        assert (version.author, version.message) == ("ops", "first")
        assert version.files == example_bundle.files
    again = invoke(runner, db, "publish", str(POLICIES), "-m", "again")
    assert again.exit_code == 0, again.output
    assert f"version {version_id} is already active; nothing changed" in again.output


def test_publish_of_a_broken_bundle_fails_and_keeps_the_active_version(
    runner, db, tmp_path, example_bundle
):
    """A bundle with errors prints each as file:line, exits 1 and stores nothing."""
    assert invoke(runner, db, "publish", str(POLICIES), "-m", "good").exit_code == 0
    broken = tmp_path / "broken"
    shutil.copytree(POLICIES, broken)
    (broken / "bad.yaml").write_text(
        rule_file(
            """
            apiVersion: policyd/v1
            package:
              id: bad
              displayName: Bad
              rules:
                - id: a
                  then: {decision: auto_approve, lifetme: {duration: P1D}}
                - id: b
                  then: {decision: maybe}
            """
        )
    )
    result = invoke(runner, db, "publish", str(broken), "-m", "broken")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{broken}/bad.yaml:7: ")
    assert lines[1].startswith(f"{broken}/bad.yaml:9: ")
    assert lines[2] == "2 errors in 1 file"
    with session_on(db) as session:
        service = VersionService(session)
        assert service.active_id() == example_bundle.version.id
        assert service.list()[1] == 1


def test_token_create_list_and_revoke(runner, db):
    """A created token authenticates, is listed without its secret, and revoking ends it."""
    created = invoke(
        runner, db, "token", "create", "--principal", "ci", "--role", "app", "--expires-in", "P30D"
    )
    assert created.exit_code == 0, created.output
    plain = TOKEN.search(created.stdout).group()
    token_id = re.search(r"created token (\S+) for ci \(role app, expires 20", created.stdout)[1]
    now = datetime.now(UTC)
    with session_on(db) as session:
        token = TokenService(session).authenticate(plain, now=now)
        assert (token.id, token.principal, token.role) == (token_id, "ci", "app")

    listed = invoke(runner, db, "token", "list", actor=None)
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"^{token_id}\s+ci\s+app\s+active\s", listed.output, re.MULTILINE)
    assert "pd_" not in listed.output

    revoked = invoke(runner, db, "token", "revoke", token_id)
    assert revoked.exit_code == 0, revoked.output
    assert revoked.output == f"revoked token {token_id} of ci\n"
    with session_on(db) as session:
        assert TokenService(session).authenticate(plain, now=now) is None
    assert re.search(
        rf"^{token_id}\s+ci\s+app\s+revoked\s",
        invoke(runner, db, "token", "list", actor=None).output,
        re.MULTILINE,
    )
    assert "was already revoked" in invoke(runner, db, "token", "revoke", token_id).output


def test_token_commands_reject_bad_input(runner, db):
    """An unknown role, a bad duration and an unknown token id each exit non-zero with a message."""
    role = invoke(runner, db, "token", "create", "--principal", "x", "--role", "root")
    assert role.exit_code == 2
    assert "'root' is not one of" in role.output
    duration = invoke(
        runner, db, "token", "create", "--principal", "x", "--role", "app", "--expires-in", "30d"
    )
    assert duration.exit_code == 2
    assert "'30d' is not an ISO-8601 duration" in duration.output
    unknown = invoke(runner, db, "token", "revoke", "nope")
    assert unknown.exit_code == 1
    assert "no token 'nope'" in unknown.output


PEOPLE = {
    "organizations": [
        {
            "id": "contoso",
            "display_name": "Contoso",
            "domains": ["Contoso.com"],
            "state": "proposed",
        }
    ],
    "users": [
        {
            "id": "ada",
            "email": "ada@example.com",
            "department": "Finance",
            "attributes": {"costCenter": "F-100"},
        },
        {"id": "grace", "manager_id": "ada", "employee_type": "contractor"},
        {"id": "lin", "type": "guest", "email": "lin@contoso.com"},
    ],
    "groups": [
        {"id": "Finance.Team", "display_name": "Finance team", "members": ["ada", "grace"]},
        {"id": "Merger.Guests", "members": ["lin"]},
    ],
}


def import_summary(output: str) -> dict[str, str]:
    """{'users': '3 created, 0 updated, 0 unchanged', ...} from the command's output."""
    return dict(re.findall(r"^  (\w+)\s+(.+)$", output, re.MULTILINE))


def test_directory_import_json_creates_everything_once(runner, db, tmp_path):
    """JSON creates users, groups, memberships and organisations; a rerun changes nothing."""
    people = tmp_path / "people.json"
    people.write_text(json.dumps(PEOPLE, indent=2))
    first = invoke(runner, db, "directory", "import", str(people))
    assert first.exit_code == 0, first.output
    assert import_summary(first.output) == {
        "organizations": "1 created, 0 updated, 0 unchanged",
        "users": "3 created, 0 updated, 0 unchanged",
        "groups": "2 created, 0 updated, 0 unchanged",
        "memberships": "3 added, 0 unchanged",
    }
    with session_on(db) as session:
        audited = session.scalar(select(func.count()).select_from(AuditRecord))
    second = invoke(runner, db, "directory", "import", str(people))
    assert second.exit_code == 0, second.output
    assert import_summary(second.output) == {
        "organizations": "0 created, 0 updated, 1 unchanged",
        "users": "0 created, 0 updated, 3 unchanged",
        "groups": "0 created, 0 updated, 2 unchanged",
        "memberships": "0 added, 3 unchanged",
    }
    with session_on(db) as session:
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == audited
        directory = DirectoryService(session)
        grace = directory.resolve_subject("grace")
        assert grace.groups == {"Finance.Team"}
        assert (grace.manager, grace.employee_type) == ("ada", "contractor")
        ada = directory.resolve_subject("ada")
        assert ada.attributes == {"costCenter": "F-100"}
        assert ada.department == "Finance"
        lin = directory.resolve_subject("lin")
        assert lin.type is UserType.GUEST
        assert lin.organization == "contoso"  # by e-mail domain, stored in lower case
        assert directory.members("Merger.Guests") == (["lin"], 1)
        actors = set(session.scalars(select(AuditRecord.actor)))
        assert actors == {"ops"}


def test_directory_import_updates_changed_entries_only(runner, db, tmp_path):
    """A second file that changes one user and renames one group updates just those."""
    people = tmp_path / "people.json"
    people.write_text(json.dumps(PEOPLE))
    assert invoke(runner, db, "directory", "import", str(people)).exit_code == 0
    changed = json.loads(json.dumps(PEOPLE))
    changed["users"][0]["department"] = "Treasury"
    changed["groups"][1]["display_name"] = "Merger guests"
    people.write_text(json.dumps(changed))
    result = invoke(runner, db, "directory", "import", str(people))
    assert result.exit_code == 0, result.output
    summary = import_summary(result.output)
    assert summary["users"] == "0 created, 1 updated, 2 unchanged"
    assert summary["groups"] == "0 created, 1 updated, 1 unchanged"
    with session_on(db) as session:
        assert DirectoryService(session).resolve_subject("ada").department == "Treasury"


def test_directory_import_csv_maps_columns_groups_and_attributes(runner, db, tmp_path):
    """A CSV import puts known columns on the user, splits groups on ';', and keeps the rest
    as attributes; a rerun changes nothing."""
    people = tmp_path / "people.csv"
    people.write_text(
        "id,email,type,manager_id,department,groups,costCenter,site\n"
        "ada,ada@example.com,member,,Finance,Finance.Team;Finance.Approvers,F-100,\n"
        'grace,grace@example.com,,ada,"Finance",Finance.Team,F-100,"Berlin\nMitte"\n'
        "\n"
        "lin,lin@contoso.com,guest,,,,,\n"
    )
    first = invoke(runner, db, "directory", "import", str(people))
    assert first.exit_code == 0, first.output
    assert import_summary(first.output) == {
        "organizations": "0 created, 0 updated, 0 unchanged",
        "users": "3 created, 0 updated, 0 unchanged",
        "groups": "2 created, 0 updated, 0 unchanged",
        "memberships": "3 added, 0 unchanged",
    }
    second = invoke(runner, db, "directory", "import", str(people))
    assert import_summary(second.output)["users"] == "0 created, 0 updated, 3 unchanged"
    assert import_summary(second.output)["memberships"] == "0 added, 3 unchanged"
    with session_on(db) as session:
        directory = DirectoryService(session)
        ada = directory.resolve_subject("ada")
        assert ada.groups == {"Finance.Team", "Finance.Approvers"}
        assert ada.attributes == {"costCenter": "F-100"}
        grace = directory.resolve_subject("grace")
        assert grace.type is UserType.MEMBER
        assert grace.manager == "ada"
        assert grace.attributes == {"costCenter": "F-100", "site": "Berlin\nMitte"}
        assert directory.resolve_subject("lin").type is UserType.GUEST
        assert directory.members("Finance.Team") == (["ada", "grace"], 2)


def test_directory_import_json_errors_name_file_line_and_field(runner, db, tmp_path):
    """Every JSON problem prints as FILE:LINE: field: message, and nothing is written."""
    people = tmp_path / "people.json"
    people.write_text(
        "{\n"
        '  "users": [\n'
        '    {"id": "ada", "type": "robot"},\n'
        '    {"id": "bob",\n'
        '     "emial": "bob@example.com"},\n'
        '    {"id": "ada"}\n'
        "  ],\n"
        '  "groups": [{"id": "g", "members": ["ada", "nobody"]}],\n'
        '  "organizations": [{"id": "o"}]\n'
        "}\n"
    )
    result = invoke(runner, db, "directory", "import", str(people))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{people}:3: users[0].type: Must be one of: member, guest.",
        f"{people}:5: users[1].emial: Unknown field.",
        f"{people}:6: users[2].id: duplicate user id 'ada' (first on line 3)",
        f"{people}:8: groups[0].members[1]: no user 'nobody' in this file or in the directory",
        f"{people}:9: organizations[0].display_name: Missing data for required field.",
        "5 errors in 1 file",
    ]
    with session_on(db) as session:
        assert DirectoryService(session).list_users()[1] == 0
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == 0


def test_directory_import_rejects_malformed_json_and_duplicate_keys(runner, db, tmp_path):
    """Broken JSON and a repeated key are errors with their lines; tab indentation is fine."""
    broken = tmp_path / "broken.json"
    broken.write_text('{\n\t"users": [\n\t\t{"id": "ada",}\n\t]\n}\n')
    result = invoke(runner, db, "directory", "import", str(broken))
    assert result.exit_code == 1
    assert result.output.startswith(f"{broken}:3: invalid JSON: ")
    repeated = tmp_path / "repeated.json"
    repeated.write_text('{\n\t"users": [\n\t\t{"id": "ada",\n\t\t "id": "bob"}\n\t]\n}\n')
    result = invoke(runner, db, "directory", "import", str(repeated))
    assert result.exit_code == 1
    assert result.output.startswith(f"{repeated}:4: users[0].id: duplicate key")
    tabs = tmp_path / "tabs.json"
    tabs.write_text('{\n\t"users": [\n\t\t{"id": "ada",\n\t\t "type": 1}\n\t]\n}\n')
    result = invoke(runner, db, "directory", "import", str(tabs))
    assert result.output.startswith(f"{tabs}:4: users[0].type: Not a valid string.")


def test_directory_import_csv_errors_name_the_row_line(runner, db, tmp_path):
    """CSV problems carry the line where the row starts and the column, and nothing is written."""
    people = tmp_path / "people.csv"
    people.write_text(
        "id,email,type,groups\n"
        'ada,ada@example.com,member,"g;\nh"\n'
        "bob,bob@example.com\n"
        ",nobody@example.com,member,\n"
        "ada,ada@example.com,member,\n"
        "cy,cy@example.com,robot,\n"
    )
    result = invoke(runner, db, "directory", "import", str(people))
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{people}:4: 2 cells, but the header has 4",
        f"{people}:5: id: Missing data for required field.",
        f"{people}:6: id: duplicate user id 'ada' (first on line 2)",
        f"{people}:7: type: Must be one of: member, guest.",
        "4 errors in 1 file",
    ]
    with session_on(db) as session:
        assert DirectoryService(session).list_users()[1] == 0


def test_directory_import_checks_users_as_the_api_does(runner, db, tmp_path):
    """An import refuses what PUT /v1/users refuses: a bad e-mail, an attribute that is a list."""
    people = tmp_path / "people.json"
    people.write_text(
        '{"users": [\n'
        '  {"id": "ada", "email": "not an address"},\n'
        '  {"id": "bob", "attributes": {"teams": ["a", "b"]}}\n'
        "]}\n"
    )
    result = invoke(runner, db, "directory", "import", str(people))
    assert result.exit_code == 1
    assert result.output.splitlines()[:2] == [
        f"{people}:2: users[0].email: Not a valid email address.",
        f"{people}:3: users[1].attributes.teams.value: "
        "attribute values are text, numbers or true/false",
    ]


def test_directory_import_csv_needs_an_id_column(runner, db, tmp_path):
    """A CSV header without `id` is reported on line 1."""
    people = tmp_path / "people.csv"
    people.write_text("email,groups\nada@example.com,g\n")
    result = invoke(runner, db, "directory", "import", str(people))
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == f"{people}:1: id: missing column"


def test_directory_import_format_comes_from_suffix_or_option(runner, db, tmp_path):
    """An unknown suffix needs --format, which then decides how the file is read."""
    people = tmp_path / "people.txt"
    people.write_text("id\nada\n")
    unknown = invoke(runner, db, "directory", "import", str(people))
    assert unknown.exit_code == 2
    assert "give --format json or csv" in unknown.output
    result = invoke(runner, db, "directory", "import", str(people), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert import_summary(result.output)["users"] == "1 created, 0 updated, 0 unchanged"


def test_directory_import_members_may_already_be_in_the_directory(runner, db, tmp_path):
    """A group may name a user imported earlier, not only one in the same file."""
    first = tmp_path / "first.csv"
    first.write_text("id\nada\n")
    assert invoke(runner, db, "directory", "import", str(first)).exit_code == 0
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"groups": [{"id": "g", "members": ["ada"]}]}))
    result = invoke(runner, db, "directory", "import", str(groups))
    assert result.exit_code == 0, result.output
    assert import_summary(result.output)["memberships"] == "1 added, 0 unchanged"


def doc_example(language: str) -> str:
    text = (ROOT / "docs" / "directory-import.md").read_text(encoding="utf-8")
    return re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)[1]


@pytest.mark.parametrize("language", ["json", "csv"])
def test_the_documented_examples_import(runner, db, tmp_path, language):
    """Each example file in docs/directory-import.md imports cleanly."""
    example = tmp_path / f"people.{language}"
    example.write_text(doc_example(language))
    result = invoke(runner, db, "directory", "import", str(example))
    assert result.exit_code == 0, result.output
    with session_on(db) as session:
        assert "Finance.Team" in DirectoryService(session).resolve_subject("grace").groups


def test_build_server_prints_an_admin_token_on_the_first_start_only(url, capsys):
    """The first start upgrades, publishes the examples and prints a working admin token."""
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    actor = Actor("ops", Role.ADMIN)
    port = free_port()
    settings = Settings.from_mapping(
        {"POLICYD_DATABASE_URL": url, "POLICYD_POLICIES": str(POLICIES), "POLICYD_PORT": port}
    )
    server = build_server(settings, actor=actor, now=now)
    app = server.app
    try:
        output = capsys.readouterr().out
        assert f"http://127.0.0.1:{port}" in output
        plain = TOKEN.search(output).group()
        assert f'curl -H "Authorization: Bearer {plain}" http://127.0.0.1:{port}/v1/' in output
        with session_on(url) as session:
            token = TokenService(session).authenticate(plain, now=now)
            assert (token.principal, token.role) == ("admin", "admin")
            assert VersionService(session).active_id() is not None
        response = app.test_client().get(
            "/v1/policy-versions", headers={"Authorization": f"Bearer {plain}"}
        )
        assert response.status_code == 200, response.get_json()
    finally:
        server.close()
    other = free_port()
    again = build_server(settings.replace(host="0.0.0.0", port=other), actor=actor, now=now)
    again.close()
    output = capsys.readouterr().out
    assert f"http://127.0.0.1:{other}" in output
    assert "pd_" not in output


def test_serve_on_a_busy_port_stops_before_making_a_token(url, capsys):
    """A port in use stops the start with a message naming it, and no token is made, so the
    next start still prints one."""
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    actor = Actor("ops", Role.ADMIN)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = Settings.from_mapping(
            {"POLICYD_DATABASE_URL": url, "POLICYD_POLICIES": str(POLICIES), "POLICYD_PORT": port}
        )
        with pytest.raises(click.ClickException, match=f"cannot listen on 127.0.0.1:{port}"):
            build_server(settings, actor=actor, now=now)
    assert "pd_" not in capsys.readouterr().out
    server = build_server(settings, actor=actor, now=now)
    server.close()
    assert TOKEN.search(capsys.readouterr().out)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_refuses_a_bad_setting_naming_it(runner, tmp_path, monkeypatch):
    """A POLICYD_* setting the service cannot use stops `policyd serve` with exit 2 and the
    setting's name, not a traceback."""
    monkeypatch.setenv("POLICYD_REMINDERS", "P1M")
    url = f"sqlite:///{tmp_path / 'p.db'}"
    result = runner.invoke(main, ["serve", "--database-url", url])
    assert result.exit_code == 2
    assert "POLICYD_REMINDERS: 'P1M'" in result.output
