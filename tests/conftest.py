"""Shared fixtures: the example policies, a frozen clock, rule-file helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent

import pytest
from click.testing import CliRunner

from policyd.rules import Bundle, Policy, load_bundle, load_texts

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"


@pytest.fixture
def clock() -> datetime:
    """A fixed, timezone-aware `now` (tests pass time in; nothing reads the clock)."""
    return datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def example_bundle() -> Bundle:
    return load_bundle(POLICIES)


@pytest.fixture
def example_policy(example_bundle: Bundle) -> Iterator[Policy]:
    policy = Policy(example_bundle)
    yield policy
    policy.close()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def rule_file(text: str) -> str:
    return dedent(text).lstrip("\n")


def policy_from(*texts: str) -> Policy:
    """A Policy built from rule-file texts (caller closes it)."""
    return Policy(load_texts({f"f{i}.yaml": rule_file(t) for i, t in enumerate(texts)}))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """With POLICYD_NO_SKIP=1 (set by CI) a skipped test counts as a failure."""
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("POLICYD_NO_SKIP") == "1"
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, but POLICYD_NO_SKIP=1 forbids skips: {report.longrepr}"
    return report
