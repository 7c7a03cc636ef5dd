"""`policyd access-report` and `policyd audit verify/export`, on every database backend."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from policyd.cli import main
from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, load_texts
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.requests import RequestService
from policyd.services.versions import VersionService
from policyd.store import Database
from tests.conftest import rule_file

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
VAULT = rule_file(
    """
    apiVersion: policyd/v1
    package:
      id: vault-readers
      displayName: Vault readers
      resources:
        - {connector: directory, resource: "group:Vault.Readers", role: member}
      lifetime: {duration: P90D, extendable: true}
      rules:
        - id: eligible
          priority: 100
          when: {subject.groups: {contains: Vault.Eligible}}
          then: {decision: auto_approve}
        - id: everyone-else
          when: {subject.groups: {not_contains: Vault.Eligible}}
          then:
            decision: require_approval
            approval: {stages: [{approvers: ["user:boss"], timeout: P3D}]}
    """
)


class Scenario:
    """Access to vault-readers granted and ended through the services at chosen times."""

    def __init__(self, store: Database):
        self.store = store
        self.runtime = PolicyRuntime()
        files = {"vault.yaml": VAULT}
        with store.session() as session:
            self.version = (
                VersionService(session).publish(SYSTEM, files, message="vault", now=T0).id
            )
            directory = DirectoryService(session)
            directory.put_group(SYSTEM, "Vault.Eligible", None, now=T0)
            for user in ("ada", "bob", "cy", "dee", "boss"):
                directory.put_user(SYSTEM, user, {}, now=T0)
            for user in ("ada", "cy", "dee"):
                directory.add_member(SYSTEM, "Vault.Eligible", user, now=T0)
            session.commit()
        self.runtime.activate(load_texts(files))

    def request(self, user: str, now: datetime, approver: str | None = None) -> str:
        """File (and approve) a request; returns the assignment id."""
        with self.store.session() as session:
            service = RequestService(session, self.runtime)
            request, _ = service.create(
                Actor(user, Role.USER), "vault-readers", user, None, RequestOptions(), now=now
            )
            if approver:
                service.decide_stage(
                    Actor(approver, Role.USER), request.id, "approve", comment=None, now=now
                )
            assignment = AssignmentService(session, self.runtime).active_for(user, "vault-readers")
            return assignment.id

    def extend(self, assignment_id: str, user: str, now: datetime) -> str:
        """An extension (auto-approved for the eligible); returns its request id."""
        with self.store.session() as session:
            request, _ = RequestService(session, self.runtime).extend(
                Actor(user, Role.USER), assignment_id, RequestOptions(), now=now
            )
            assert request.state == "delivered"
            return request.id

    def remove(self, assignment_id: str, now: datetime) -> None:
        with self.store.session() as session:
            AssignmentService(session, self.runtime).remove(SYSTEM, assignment_id, now=now)

    def activate(self, assignment_id: str) -> None:
        """As the worker would once the grant is delivered (extensions need active access)."""
        with self.store.engine.begin() as connection:
            connection.execute(
                text("UPDATE assignments SET state = 'active' WHERE id = :id"),
                {"id": assignment_id},
            )


@pytest.fixture
def scenario(store: Database) -> Scenario:
    """ada (rules) from T0; bob (approved by boss) from T0+1d; cy from T0+2d to T0+3d;
    dee from T0+5d."""
    scene = Scenario(store)
    scene.ada = scene.request("ada", T0)
    scene.bob = scene.request("bob", T0 + timedelta(days=1), approver="boss")
    scene.cy = scene.request("cy", T0 + timedelta(days=2))
    scene.remove(scene.cy, T0 + timedelta(days=3))
    scene.dee = scene.request("dee", T0 + timedelta(days=5))
    yield scene
    scene.runtime.close()


def run(runner, store: Database, *args: str):
    return runner.invoke(main, [*args, "--database-url", store.url])


def report_rows(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


def test_access_report_lists_exactly_the_holders_at_a_moment(runner, store, scenario):
    """At T0+4d: ada and bob, with rule and version; not cy (ended before) nor dee (started
    after)."""
    at = (T0 + timedelta(days=4)).isoformat()
    result = run(runner, store, "access-report", "--package", "vault-readers", "--at", at)
    assert result.exit_code == 0, result.output
    rows = report_rows(result.output)
    assert [(r["subject"], r["assignment"]) for r in rows] == [
        ("ada", scenario.ada),
        ("bob", scenario.bob),
    ]
    assert [(r["rule"], r["version"], r["approved_by"]) for r in rows] == [
        ("eligible", scenario.version, ""),
        ("everyone-else", scenario.version, "boss"),
    ]


def test_a_holder_counts_from_its_start_until_its_removal(runner, store, scenario):
    """At the moment access starts it is held; at the moment its removal began it is not."""
    start = (T0 + timedelta(days=2)).isoformat()
    end = (T0 + timedelta(days=3)).isoformat()
    held = run(runner, store, "access-report", "--subject", "cy", "--at", start)
    gone = run(runner, store, "access-report", "--subject", "cy", "--at", end)
    assert [r["subject"] for r in report_rows(held.output)] == ["cy"]
    assert report_rows(gone.output) == []


def test_access_report_over_a_period_lists_everyone_who_held_it(runner, store, scenario):
    """From T0+2d12h to T0+4d: ada, bob and cy (whose access ended inside the period)."""
    result = run(
        runner,
        store,
        "access-report",
        "--package",
        "vault-readers",
        "--from",
        (T0 + timedelta(days=2, hours=12)).isoformat(),
        "--to",
        (T0 + timedelta(days=4)).isoformat(),
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert [item["subject_id"] for item in items] == ["ada", "bob", "cy"]
    assert items[2]["held_until"] == (T0 + timedelta(days=3)).isoformat()
    assert items[1]["terms"][0]["approved_by"] == [
        {"approver": "boss", "stage": 1, "at": (T0 + timedelta(days=1)).isoformat()}
    ]


def test_an_extension_shows_the_terms_in_force_at_each_time(runner, store, scenario):
    """After ada's extension at T0+6d, a report before it names her first request and one
    after it the extension's request, each with when its terms took effect."""
    scenario.activate(scenario.ada)
    extension = scenario.extend(scenario.ada, "ada", T0 + timedelta(days=6))

    def terms(at: datetime) -> list[tuple[str, str]]:
        result = run(runner, store, "access-report", "--subject", "ada", "--at", at.isoformat())
        return [(r["request"], r["terms_from"]) for r in report_rows(result.output)]

    [(first, since)] = terms(T0 + timedelta(days=4))
    assert first != extension and since == T0.isoformat()
    assert terms(T0 + timedelta(days=7)) == [(extension, (T0 + timedelta(days=6)).isoformat())]


def test_access_report_by_resource_uses_what_was_granted(runner, store, scenario):
    """--resource finds the holders through the grants their assignments made."""
    at = (T0 + timedelta(days=4)).isoformat()
    result = run(runner, store, "access-report", "--resource", "group:Vault.Readers", "--at", at)
    assert [r["subject"] for r in report_rows(result.output)] == ["ada", "bob"]
    other = run(runner, store, "access-report", "--resource", "group:Other", "--at", at)
    assert report_rows(other.output) == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--at", "2026-01-05T00:00:00Z"], "--package"),
        (["--package", "p", "--subject", "s", "--at", "2026-01-05"], "--subject"),
        (["--package", "p"], "--at"),
        (["--package", "p", "--at", "2026-01-05", "--from", "2026-01-01"], "--at"),
        (["--package", "p", "--from", "2026-01-05", "--to", "2026-01-01"], "--to"),
        (["--package", "p", "--at", "2026-01-05T10:00:00"], "--at"),
    ],
)
def test_a_bad_access_report_question_names_the_option(runner, args, option, tmp_path):
    """A missing or extra target or time, a period that ends before it starts, or a time
    without an offset stops the command (exit 2) naming the option."""
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = runner.invoke(main, ["access-report", *args, "--database-url", url])
    assert result.exit_code == 2
    assert option in result.output


def test_audit_verify_passes_an_intact_chain_and_prints_its_anchor(runner, store, scenario):
    """An untouched log verifies: exit 0, the number of records and the last HASH@ID."""
    result = run(runner, store, "audit", "verify")
    assert result.exit_code == 0, result.output
    assert "chain intact:" in result.output
    anchor = result.output.split("anchor ")[1].strip()
    again = run(runner, store, "audit", "verify", "--from-anchor", anchor)
    assert again.exit_code == 0 and "chain intact: 1 records" in again.output


def test_audit_verify_names_an_edited_record_and_exits_1(runner, store, scenario):
    """An edited record makes verify fail naming its id and what is wrong."""
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit SET actor = 'mallory' WHERE id = 5"))
    result = run(runner, store, "audit", "verify")
    assert result.exit_code == 1
    assert "audit record 5: content does not match its hash" in result.output
    assert "chain broken: 1 problems" in result.output


def test_audit_verify_refuses_a_malformed_anchor(runner, store):
    """--from-anchor takes HASH@ID: anything else is a usage error naming the option."""
    result = run(runner, store, "audit", "verify", "--from-anchor", "abc@x")
    assert result.exit_code == 2 and "--from-anchor" in result.output


def test_audit_export_streams_records_with_their_hashes(runner, store, scenario):
    """JSON lines carry every column and the hashes; each line's prev_hash is the previous
    line's hash; CSV has the same columns."""
    result = run(runner, store, "audit", "export")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(lines))
    assert {"request_id", "hash", "before", "after", "version"} <= set(lines[0])
    since = (T0 + timedelta(days=5)).isoformat()
    later = run(runner, store, "audit", "export", "--since", since, "--format", "csv")
    rows = report_rows(later.output)
    assert rows and all(row["at"] >= "2026-01-10" for row in rows)
    assert rows[-1]["hash"] == lines[-1]["hash"]


def test_an_export_is_rechecked_with_the_documented_recipe(runner, store, scenario):
    """Each exported line's hash is sha256 of ID:PREV_HASH:CONTENT_DIGEST, the digest being
    the sha256 of its other columns as canonical JSON (docs/audit.md), computed here without
    policyd's code."""
    result = run(runner, store, "audit", "export")
    for line in result.output.splitlines():
        record = json.loads(line)
        digest, record_id, prev = record.pop("hash"), record.pop("id"), record.pop("prev_hash")
        content = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        content_digest = hashlib.sha256(content.encode("ascii")).hexdigest()
        chained = f"{record_id}:{prev}:{content_digest}".encode("ascii")
        assert hashlib.sha256(chained).hexdigest() == digest
