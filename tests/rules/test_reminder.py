"""A package's own reminders in its rule file: loaded, checked at file:line, and packed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from policyd.rules import ProblemsError, load_texts
from policyd.rules.model import ReminderPolicy
from policyd.rules.packed import pack_bundle, unpack_bundle

FILE = """apiVersion: policyd/v1
package:
  id: pkg
  displayName: A package
  lifetime: {{duration: P30D}}
  reminders:
{reminders}
  rules:
    - id: all
      then: {{decision: auto_approve}}
"""


def load(reminders: str):
    return load_texts({"pkg.yaml": FILE.format(reminders=reminders)})


def problems_of(reminders: str) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load(reminders)
    return [str(p) for p in caught.value.problems]


def test_reminders_load_longest_first():
    """expiry offsets load sorted, longest first; approval as a span."""
    package = load("    expiry: [P1D, P7D, PT12H]\n    approval: P2D").package("pkg")
    assert package.reminders == ReminderPolicy(
        expiry=(timedelta(days=7), timedelta(days=1), timedelta(hours=12)),
        approval=timedelta(days=2),
    )


def test_an_empty_expiry_list_means_no_expiry_reminders():
    """`expiry: []` is the package's choice of none, not the service's setting."""
    assert load("    expiry: []").package("pkg").reminders == ReminderPolicy(expiry=())
    assert load("    approval: PT4H").package("pkg").reminders.expiry is None


@pytest.mark.parametrize(
    ("reminders", "problem"),
    [
        ("    expiry: [P1M]", "pkg.yaml:7: package.reminders.expiry[0]: 'P1M': give reminders"),
        (
            "    approval: PT0S",
            "pkg.yaml:7: package.reminders.approval: 'PT0S': a duration must be longer",
        ),
        ("    expiry: [P1D, P1D]", "pkg.yaml:7: package.reminders.expiry: an expiry reminder re"),
        ("    every: P1D", "pkg.yaml:7: package.reminders.every: unknown key"),
    ],
)
def test_a_bad_reminder_is_an_error_at_its_line(reminders, problem):
    """Months, a zero span, a repeat or an unknown key are refused with file:line."""
    [found] = problems_of(reminders)
    assert found.startswith(problem)


def test_reminders_survive_packing():
    """The packed bundle keeps each package's reminders, and lists them in its header so the
    reminder task reads them without decoding the packages."""
    bundle = load("    expiry: [P7D]\n    approval: P1D")
    unpacked = unpack_bundle(pack_bundle(bundle))
    assert unpacked.reminders == {"pkg": bundle.package("pkg").reminders}
    assert unpacked.packages.decoded == 0
    assert unpacked.packages["pkg"] == bundle.package("pkg")
