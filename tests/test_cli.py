"""The policy author's CLI: check, test, eval, bundle-id."""

from __future__ import annotations

import json
import shutil

import click
import pytest

from policyd.cli import main
from policyd.cli.base import _session
from policyd.domain import JobState, transition
from policyd.rules import load_bundle
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.versions import VersionService
from policyd.store import Database
from policyd.store.models import PolicyVersion
from tests.conftest import POLICIES, rule_file
from tests.rules.test_question import QUESTIONS
from tests.rules.test_source import billion_laughs


def test_check_passes_on_the_examples(runner):
    """`policyd check policies/` exits 0 and summarises the bundle."""
    result = runner.invoke(main, ["check", str(POLICIES)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 5 packages, 11 rules, 16 test cases; version ")


def test_check_with_connectors_checks_resources_as_publishing_does(runner, tmp_path):
    """--connectors adds the publish-time resource checks: unknown instances and resources
    their connector type cannot take are file:line errors; exit 1."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    readers = policies / "scope-a-readers.yaml"
    readers.write_text(
        readers.read_text().replace('"group:Group.ScopeA.Readers"', '"Group.ScopeA.Readers"')
    )
    connectors = tmp_path / "connectors.yaml"
    connectors.write_text("apiVersion: policyd/v1\nconnectors: []\n")
    assert runner.invoke(main, ["check", str(policies)]).exit_code == 0  # without: not checked
    result = runner.invoke(main, ["check", str(policies), "--connectors", str(connectors)])
    assert result.exit_code == 1
    assert "scope-a-readers.yaml:9: package.resources[0].resource" in result.output
    assert "directory resources are group:<id>" in result.output


def test_check_reports_every_error_and_fails(runner, tmp_path):
    """A typo'd key, a bad duration and a bad cron give three file:line errors and exit 1."""
    (tmp_path / "bad.yaml").write_text(
        rule_file(
            """
            apiVersion: policyd/v1
            package:
              id: bad
              displayName: Bad
              rules:
                - id: a
                  then:
                    decision: auto_approve
                    lifetme: {duration: P1D}
                - id: b
                  then:
                    decision: auto_approve
                    lifetime: {duration: 8 hours}
                - id: c
                  when: {now: {within: "every monday"}}
                  then: {decision: deny}
            """
        )
    )
    result = runner.invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert [line.split(": ")[0] for line in lines[:3]] == [
        f"{tmp_path}/bad.yaml:9",
        f"{tmp_path}/bad.yaml:13",
        f"{tmp_path}/bad.yaml:15",
    ]
    assert "lifetme: unknown key" in lines[0]
    assert "'8 hours' is not an ISO-8601 duration" in lines[1]
    assert "'every monday' is not a valid cron expression" in lines[2]
    assert lines[3] == "3 errors in 1 file"


def test_check_refuses_an_alias_bomb_with_its_file_and_line(runner, tmp_path):
    """A 1.5 KB billion-laughs rule file is one file:line error and exit 1, not MemoryError."""
    shutil.copytree(POLICIES, tmp_path / "p")
    (tmp_path / "p" / "lol.yaml").write_text(billion_laughs())
    result = runner.invoke(main, ["check", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{tmp_path}/p/lol.yaml:6: invalid YAML: aliases repeat more than 10000 values in this "
        "document; write the values out instead",
        "1 error in 1 file",
    ]


def test_check_refuses_a_rule_file_nested_ten_thousand_deep_with_its_file_and_line(
    runner, tmp_path
):
    """YAML nested 10,000 levels is one file:line error and exit 1, not a RecursionError."""
    shutil.copytree(POLICIES, tmp_path / "p")
    deep = "apiVersion: policyd/v1\npackage: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n"
    (tmp_path / "p" / "deep.yaml").write_text(deep)
    result = runner.invoke(main, ["check", str(tmp_path / "p")])
    assert result.exit_code == 1
    first, last = result.output.splitlines()
    assert first.startswith(f"{tmp_path}/p/deep.yaml:2: invalid YAML: ")
    assert last == "1 error in 1 file"


def test_check_refuses_a_lifetime_cron_that_never_fires_at_its_file_and_line(runner, tmp_path):
    """`until: {cron: "0 0 31 2 *"}` fails `check` at its line, instead of passing and then
    failing every decision."""
    shutil.copytree(POLICIES, tmp_path / "p")
    finance = tmp_path / "p" / "quarter-end-finance.yaml"
    finance.write_text(finance.read_text().replace("0 0 1 1,4,7,10 *", "0 0 31 2 *"))
    result = runner.invoke(main, ["check", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{finance}:25: package.rules[0].then.lifetime.until.cron: cron '0 0 31 2 *' never fires",
        "1 error in 1 file",
    ]


PERMANENT = """
apiVersion: policyd/v1
package:
  id: newsletter
  displayName: Staff newsletter
  rules:
    - id: members
      then: {decision: auto_approve, lifetime: {permanent: true}}
"""


def test_eval_shows_permanent_access_as_never_expiring(runner, tmp_path):
    """A permanent lifetime prints `expires never` (and null in --json)."""
    (tmp_path / "newsletter.yaml").write_text(rule_file(PERMANENT))
    args = ["eval", "newsletter", "-p", str(tmp_path), "--id", "ada"]
    result = runner.invoke(main, [*args, "--now", "2026-01-05T09:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "expires   never  (permanent: no end date)" in result.output
    result = runner.invoke(main, [*args, "--json"])
    assert json.loads(result.output)["lifetime"]["expires_at"] is None


def test_a_policy_test_expecting_never_fails_on_an_expiring_lifetime(runner, tmp_path):
    """`expiresAt: never` passes for permanent access and fails, saying so, for a date."""
    (tmp_path / "newsletter.yaml").write_text(rule_file(PERMANENT))
    (tmp_path / "tests").mkdir()
    case = (
        "apiVersion: policyd/v1\ntests:\n"
        "  - {name: forever, package: newsletter, now: 2026-01-05T09:00:00Z,\n"
        "     subject: {id: ada}, expect: {decision: auto_approve, expiresAt: never}}\n"
    )
    (tmp_path / "tests" / "t.yaml").write_text(case)
    assert runner.invoke(main, ["test", str(tmp_path)]).exit_code == 0
    newsletter = tmp_path / "newsletter.yaml"
    newsletter.write_text(newsletter.read_text().replace("permanent: true", "duration: P1D"))
    result = runner.invoke(main, ["test", str(tmp_path)])
    assert result.exit_code == 1
    assert "expected expiresAt never, got 2026-01-06T09:00:00+00:00" in result.output


def test_check_refuses_a_policy_test_dated_outside_the_decision_range(runner, tmp_path):
    """A case's `now` outside 1970-2199 is a file:line error in `check`, not a traceback in
    `test`."""
    (tmp_path / "newsletter.yaml").write_text(rule_file(PERMANENT))
    (tmp_path / "tests").mkdir()
    case = (
        "apiVersion: policyd/v1\ntests:\n"
        "  - {name: late, package: newsletter, now: 9999-12-31T23:59:00Z,\n"
        "     subject: {id: ada}, expect: {decision: auto_approve}}\n"
    )
    (tmp_path / "tests" / "t.yaml").write_text(case)
    for command in ("check", "test"):
        result = runner.invoke(main, [command, str(tmp_path)])
        assert result.exit_code == 1
        assert f"{tmp_path}/tests/t.yaml:3: tests[0].now: 9999-12-31T23:59:00+00:00 is not " in (
            result.output
        )


def test_check_validates_test_files_too(runner, tmp_path):
    """A test case naming an unknown package or rule fails `check` with its line."""
    shutil.copytree(POLICIES, tmp_path / "p")
    (tmp_path / "p" / "tests" / "bad.yaml").write_text(
        "apiVersion: policyd/v1\ntests:\n"
        "  - {name: x, package: nope, now: 2026-01-01, subject: {id: a},\n"
        "     expect: {decision: deny}}\n"
        "  - name: y\n    package: scope-a-readers\n    now: 2026-01-01\n    subject: {id: a}\n"
        "    expect: {decision: deny, rule: ghost}\n"
    )
    result = runner.invoke(main, ["check", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert "bad.yaml:3: tests[0].package: unknown package 'nope'" in result.output
    assert "bad.yaml:9: tests[1].expect.rule: package 'scope-a-readers' has no rule 'ghost'" in (
        result.output
    )


SALES_CRM = """\
apiVersion: policyd/v1
package:
  id: sales-crm
  displayName: Sales CRM
  rules:
    - id: sales-ask
      when: {subject.department: Sales}
      then: {decision: auto_approve, lifetime: {duration: P90D}}
  autoAssign:
    when: {subject.department: Sales, subject.type: member}
"""


def test_a_policy_test_checks_auto_assignment(runner, tmp_path):
    """`autoAssigned` checks the package's autoAssign against the subject, alone or beside a
    decision; a wrong expectation fails saying what matched, one on a package without
    autoAssign is a file:line error of `check` and `test`."""
    (tmp_path / "crm.yaml").write_text(SALES_CRM)
    (tmp_path / "tests").mkdir()
    cases = tmp_path / "tests" / "t.yaml"
    cases.write_text(
        "apiVersion: policyd/v1\ntests:\n"
        "  - {name: member, package: sales-crm, now: 2026-01-05T09:00:00Z,\n"
        "     subject: {id: sam, department: Sales}, expect: {autoAssigned: true}}\n"
        "  - {name: guest, package: sales-crm, now: 2026-01-05T09:00:00Z,\n"
        "     subject: {id: gus, department: Sales, type: guest},\n"
        "     expect: {decision: auto_approve, rule: sales-ask, autoAssigned: false}}\n"
    )
    result = runner.invoke(main, ["test", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "policy tests: 2 passed, 0 failed" in result.output
    cases.write_text(cases.read_text().replace("autoAssigned: true", "autoAssigned: false"))
    result = runner.invoke(main, ["test", str(tmp_path)])
    assert result.exit_code == 1
    assert "expected autoAssigned false, got true (the package's autoAssign.when matches" in (
        result.output
    )
    (tmp_path / "crm.yaml").write_text(SALES_CRM.split("  autoAssign:")[0])
    for command in ("check", "test"):
        result = runner.invoke(main, [command, str(tmp_path)])
        assert result.exit_code == 1
        assert "t.yaml:4: tests[0].expect.autoAssigned: package 'sales-crm' has no autoAssign" in (
            result.output
        )
    cases.write_text(
        "apiVersion: policyd/v1\ntests:\n"
        "  - {name: empty, package: sales-crm, now: 2026-01-05T09:00:00Z,\n"
        "     subject: {id: sam}, expect: {rule: sales-ask}}\n"
        "  - {name: half, package: sales-crm, now: 2026-01-05T09:00:00Z,\n"
        "     subject: {id: sam}, expect: {rule: sales-ask, autoAssigned: true}}\n"
    )
    result = runner.invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 1
    assert "tests[0].expect.decision: expect a decision, autoAssigned" in result.output
    assert "tests[1].expect.decision: rule needs a decision" in result.output


def test_test_command_passes_and_reports_full_coverage(runner):
    """`policyd test` runs every example case and reports coverage."""
    result = runner.invoke(main, ["test", str(POLICIES), "--min-coverage", "100"])
    assert result.exit_code == 0, result.output
    assert "policy tests: 16 passed, 0 failed" in result.output
    assert "coverage: 11/11 rules matched by a case (100.0%)" in result.output


def test_test_command_fails_on_a_wrong_expectation_and_low_coverage(runner, tmp_path):
    """A failing case exits 1 with the difference; uncovered rules are listed."""
    shutil.copytree(POLICIES, tmp_path / "p")
    tests = tmp_path / "p" / "tests"
    for path in tests.glob("*.yaml"):
        if path.name != "scope-a-readers.yaml":
            path.unlink()
    result = runner.invoke(main, ["test", str(tmp_path / "p"), "--min-coverage", "50"])
    assert result.exit_code == 1
    assert "coverage: 2/11 rules matched by a case (18.2%)" in result.output
    assert "not matched: sales-support/sales-employees (" in result.output
    assert "below --min-coverage 50%" in result.output
    text = (tests / "scope-a-readers.yaml").read_text()
    (tests / "scope-a-readers.yaml").write_text(
        text.replace("expiresAt: 2026-01-05T17:00:00Z}", "expiresAt: 2026-01-05T18:00:00Z}", 1)
    )
    result = runner.invoke(main, ["test", str(tmp_path / "p")])
    assert result.exit_code == 1
    assert "FAIL " in result.output
    assert "expected expiresAt 2026-01-05T18:00:00+00:00, got 2026-01-05T17:00:00+00:00" in (
        result.output
    )
    assert "policy tests: 3 passed, 1 failed" in result.output


def test_eval_eligible_member_is_auto_approved_for_eight_hours(runner):
    """The JIT example: an eligible member gets auto_approve expiring 8 hours after now."""
    args = ["eval", "scope-a-readers", "-p", str(POLICIES), "--id", "ada"]
    args += ["--group", "Group.ScopeA.Readers.Eligible", "--now", "2026-01-05T09:00:00Z", "--json"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["decision"] == "auto_approve"
    assert decision["rule"] == "eligible-members"
    assert decision["lifetime"]["expires_at"] == "2026-01-05T17:00:00Z"
    assert len(decision["version"]) == 12


def test_eval_anyone_else_needs_the_approver_group(runner):
    """The JIT example: anyone else needs approval naming the approver group."""
    args = ["eval", "scope-a-readers", "-p", str(POLICIES), "--id", "bob"]
    result = runner.invoke(main, [*args, "--now", "2026-01-05T09:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "decision  require_approval" in result.output
    assert "stage 1   group:Group.ScopeA.Approvers within PT4H" in result.output


def test_eval_reads_a_subject_file(runner, tmp_path):
    """--subject takes a JSON file; its errors come back with file:line."""
    good = tmp_path / "s.json"
    good.write_text(json.dumps({"id": "ann", "email": "ann@fabrikam.com", "type": "guest"}))
    args = ["eval", "merger-collaboration", "-p", str(POLICIES), "--json"]
    result = runner.invoke(main, [*args, "--subject", str(good)])
    assert json.loads(result.output)["rule"] == "acquired-company"
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "id": "ann",\n  "type": "robot"\n}\n')
    result = runner.invoke(main, [*args, "--subject", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3: type: Must be one of: member, guest." in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--id", "a", "--duration", "8h"], "'8h' is not an ISO-8601 duration"),
        (["--id", "a", "--now", "yesterday"], "'yesterday' is not an ISO-8601 date-time"),
        (["--id", "a", "--attr", "novalue"], "'novalue' is not KEY=VALUE"),
        (["--id", "a", "--now", "9999-12-31T23:59:00Z"], "is not between 1970 and 2199"),
        (["--id", "a", "--duration", "P10675199D"], "a duration is at most 1000 years"),
        ([], "give --subject FILE or at least --id"),
    ],
)
def test_eval_rejects_bad_input_with_a_clear_message(runner, extra, message):
    """Bad flags exit 2 with a message naming the problem, never a traceback."""
    result = runner.invoke(main, ["eval", "scope-a-readers", "-p", str(POLICIES), *extra])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_eval_unknown_package_lists_the_known_ones(runner):
    """An unknown package id is a usage error listing the valid ids."""
    result = runner.invoke(main, ["eval", "nope", "-p", str(POLICIES), "--id", "a"])
    assert result.exit_code == 2
    assert "unknown package 'nope'; known: merger-collaboration" in result.output


def test_bundle_id_prints_the_content_hash(runner, example_bundle):
    """`policyd bundle-id` prints the id and full hash of the rules."""
    result = runner.invoke(main, ["bundle-id", str(POLICIES), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["id"] == example_bundle.version.id
    assert data["content_hash"].startswith(data["id"]) and len(data["content_hash"]) == 64


ELIGIBLE = "Group.ScopeA.Readers.Eligible"


@pytest.fixture
def published(store, example_bundle, clock):
    """The examples published and active in the backend's database, and a directory with ada
    (in the eligible group) and bob (not); returns the database URL."""
    admin = Actor("ops", Role.ADMIN)
    with store.session() as session:
        VersionService(session).publish(admin, example_bundle.files, message="one", now=clock())
        directory = DirectoryService(session)
        for user in ("ada", "bob"):
            directory.put_user(admin, user, {"email": f"{user}@contoso.com"}, now=clock())
        directory.put_group(admin, ELIGIBLE, None, now=clock())
        directory.add_member(admin, ELIGIBLE, "ada", now=clock())
        session.commit()
    return store.url


def eval_stored(runner, url: str, *args: str):
    base = ["eval", "scope-a-readers", "--now", "2026-01-05T09:00:00Z", "--database-url", url]
    return runner.invoke(main, [*base, *args])


def test_eval_reads_local_files_and_given_facts_only_by_default(runner, published, monkeypatch):
    """Without --live, ada's directory groups are not used: only what the flags say (and no
    setting is read, so a bad one in the environment does not matter)."""
    monkeypatch.setenv("POLICYD_DATABASE_URL", published)
    monkeypatch.setenv("POLICYD_SYNC_INTERVAL", "soon")
    result = runner.invoke(main, ["eval", "scope-a-readers", "-p", str(POLICIES), "--id", "ada"])
    assert result.exit_code == 0, result.output
    assert "decision  require_approval" in result.output


def test_eval_live_decides_with_the_active_version_and_the_directory(
    runner, published, example_bundle
):
    """--live evaluates the active published version with ada's groups from the directory."""
    result = eval_stored(runner, published, "--live", "--id", "ada", "--json")
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert (decision["decision"], decision["rule"]) == ("auto_approve", "eligible-members")
    assert decision["version"] == example_bundle.version.id


def test_eval_live_adds_the_facts_given_to_the_directorys(runner, published):
    """Facts on the command line are laid over the directory's, as for an admin's decision."""
    result = eval_stored(runner, published, "--live", "--id", "bob", "--group", ELIGIBLE)
    assert result.exit_code == 0, result.output
    assert "rule      eligible-members" in result.output


def test_eval_version_evaluates_that_published_version(runner, published, clock, tmp_path):
    """--version ID evaluates an older version while --live follows the newer active one."""
    first = json.loads(eval_stored(runner, published, "--live", "--id", "ada", "--json").output)
    newer = tmp_path / "p"
    shutil.copytree(POLICIES, newer)
    readers = newer / "scope-a-readers.yaml"
    readers.write_text(readers.read_text().replace(ELIGIBLE, "Group.ScopeA.Readers.Trusted"))
    database = Database(published)
    try:
        with database.session() as session:
            files = load_bundle(newer).files
            VersionService(session).publish(
                Actor("ops", Role.ADMIN), files, message="2", now=clock()
            )
    finally:
        database.dispose()
    live = json.loads(eval_stored(runner, published, "--live", "--id", "ada", "--json").output)
    assert live["version"] != first["version"] and live["rule"] == "everyone-else"
    old = eval_stored(runner, published, "--version", first["version"], "--id", "ada", "--json")
    assert old.exit_code == 0, old.output
    assert (json.loads(old.output)["version"], json.loads(old.output)["rule"]) == (
        first["version"],
        "eligible-members",
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--version", "0123456789ab", "--id", "ada"], 1, "no policy version '0123456789ab'"),
        (["--live", "--id", "ghost"], 1, "no user 'ghost' in the directory"),
        (["--live", "--version", "x", "--id", "ada"], 2, "give --live or --version ID, not both"),
        (["--live", "-p", "policies", "--id", "ada"], 2, "--policies reads local files"),
    ],
)
def test_eval_live_and_version_refuse_what_they_cannot_evaluate(
    runner, published, args, code, message
):
    """An unknown version or user, or conflicting sources, exit non-zero with a message."""
    result = eval_stored(runner, published, *args)
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def test_eval_live_without_an_active_version_says_to_publish(runner, store):
    """An empty database has nothing to evaluate: the message says to publish."""
    result = eval_stored(runner, store.url, "--live", "--id", "ada")
    assert result.exit_code == 1
    assert "no policy version is active in" in result.output
    assert "publish one first" in result.output


def test_eval_live_on_a_missing_sqlite_file_leaves_none_behind(runner, tmp_path):
    """--live names a missing database file instead of creating an empty one."""
    missing = tmp_path / "nowhere.db"
    result = eval_stored(runner, f"sqlite:///{missing}", "--live", "--id", "ada")
    assert result.exit_code == 1
    assert f"no policyd database at {missing}" in result.output
    assert not missing.exists()


def test_eval_live_finds_the_database_in_the_environment(runner, published, monkeypatch):
    """Without --database-url, --live reads the database POLICYD_DATABASE_URL names."""
    monkeypatch.setenv("POLICYD_DATABASE_URL", published)
    args = ["eval", "scope-a-readers", "--live", "--id", "ada", "--now", "2026-01-05T09:00:00Z"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "rule      eligible-members" in result.output


def test_eval_version_of_a_stored_version_that_no_longer_loads_prints_why(runner, published, clock):
    """A version published under older checks is reported with its file:line problems."""
    database = Database(published)
    try:
        with database.session() as session:
            session.add(
                PolicyVersion(
                    id="0ldversi0n00",
                    content_hash="0" * 64,
                    files={"never.yaml": rule_file(NEVER_FIRES)},
                    author="ops",
                    message="old",
                    created_at=clock(),
                    packages=["never"],
                )
            )
            session.commit()
    finally:
        database.dispose()
    result = eval_stored(runner, published, "--version", "0ldversi0n00", "--id", "ada")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "version 0ldversi0n00 does not load with this policyd:",
        "never.yaml:7: package.rules[0].then.lifetime.until.cron: cron '0 0 31 2 *' never fires",
        "1 error in 1 file",
    ]


NEVER_FIRES = """
apiVersion: policyd/v1
package:
  id: never
  displayName: Never
  rules:
    - id: all
      then: {decision: auto_approve, lifetime: {until: {cron: "0 0 31 2 *"}}}
"""


def test_eval_and_test_name_the_template_of_a_generated_package(runner, tmp_path):
    """`policyd eval` shows the template and row a package came from; a failing policy test
    on a generated package names them too."""
    from tests.rules.test_template import template

    (tmp_path / "scopes.yaml").write_text(template("rowsFrom: scopes.csv"))
    (tmp_path / "scopes.csv").write_text("scope\nScopeA\n")
    shown = runner.invoke(
        main, ["eval", "scopea-readers", "--policies", str(tmp_path), "--id", "ada"]
    )
    assert shown.exit_code == 0, shown.output
    assert "template  scope-readers  (row scopes.csv:2)" in shown.output
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "cases.yaml").write_text(
        "apiVersion: policyd/v1\ntests:\n"
        "  - name: wrong on purpose\n    package: scopea-readers\n    now: 2026-01-05T09:00:00Z\n"
        "    subject: {id: ada}\n    expect: {decision: auto_approve}\n"
    )
    tested = runner.invoke(main, ["test", str(tmp_path)])
    assert tested.exit_code == 1
    assert "wrong on purpose  [scope-readers template, row scopes.csv:2]" in tested.output


def test_a_fifty_scope_template_passes_its_policy_tests(runner, tmp_path):
    """A 50-row template makes 100 packages whose 150 policy test cases pass with every
    generated rule covered."""
    from tests.rules.test_template import template

    (tmp_path / "scopes.yaml").write_text(template("rowsFrom: scopes.csv"))
    scopes = [f"Scope{n:02}" for n in range(50)]
    (tmp_path / "scopes.csv").write_text("scope\n" + "".join(f"{s}\n" for s in scopes))
    cases = ["apiVersion: policyd/v1", "tests:"]
    for scope in scopes:
        slug = scope.lower()
        eligible = f"Group.{scope}.Readers.Eligible"
        cases += [
            f"  - name: {scope} eligible reader",
            f"    package: {slug}-readers",
            "    now: 2026-01-05T09:00:00Z",
            f"    subject: {{id: ada, groups: [{eligible}]}}",
            "    expect: {decision: auto_approve, rule: eligible-members}",
            f"  - name: {scope} other reader",
            f"    package: {slug}-readers",
            "    now: 2026-01-05T09:00:00Z",
            "    subject: {id: bob}",
            "    expect:",
            "      decision: require_approval",
            "      rule: everyone-else",
            f"      approvers: ['group:Group.{scope}.Approvers']",
            f"  - name: {scope} eligibility",
            f"    package: {slug}-eligibility",
            "    now: 2026-01-05T09:00:00Z",
            "    subject: {id: bob}",
            "    expect: {decision: require_approval, rule: approvers-decide}",
        ]
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "scopes.yaml").write_text("\n".join(cases) + "\n")
    result = runner.invoke(main, ["test", str(tmp_path), "--min-coverage", "100"])
    assert result.exit_code == 0, result.output
    assert "policy tests: 150 passed, 0 failed" in result.output
    assert "coverage: 150/150 rules matched by a case (100.0%)" in result.output


def test_a_refused_state_change_in_a_command_is_an_error_message(store):
    """An IllegalTransitionError inside a command's session ends it with its message."""
    with pytest.raises(click.ClickException) as caught, _session(store.url):
        transition(JobState.DONE, JobState.QUEUED)
    assert caught.value.message == "job is done; it cannot become queued"


def test_eval_takes_answers_to_the_package_questions(runner, tmp_path):
    """`--answer ID=VALUE` answers a question (numbers read as numbers); the rule on it decides."""
    (tmp_path / "pkg.yaml").write_text(QUESTIONS)
    args = ["eval", "pkg", "-p", str(tmp_path), "--id", "ada", "--json", "--answer", "ticket=T"]
    approved = runner.invoke(main, [*args, "--answer", "team=payments"])
    assert json.loads(approved.output)["rule"] == "payments-with-ticket", approved.output
    denied = runner.invoke(main, [*args, "--answer", "hours=21"])
    assert json.loads(denied.output)["rule"] == "long-hours", denied.output


def test_eval_names_an_unfitting_answer(runner, tmp_path):
    """A required question left out, or a bad answer, exits 2 naming answers.<id>."""
    (tmp_path / "pkg.yaml").write_text(QUESTIONS)
    args = ["eval", "pkg", "-p", str(tmp_path), "--id", "ada", "--answer", "team=legal"]
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert "answers.ticket" in result.output and "Traceback" not in result.output
