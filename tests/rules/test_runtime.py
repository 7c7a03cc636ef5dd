"""The active policy version and its atomic swap."""

from __future__ import annotations

import pytest

from policyd.domain import Subject
from policyd.rules import EngineClosedError, PolicyRuntime, load_texts
from tests.conftest import rule_file


def bundle(reason: str):
    return load_texts(
        {
            "p.yaml": rule_file(
                f"""
                apiVersion: policyd/v1
                package:
                  id: pkg
                  displayName: P
                  rules:
                    - {{id: r, then: {{decision: deny, reason: {reason}}}}}
                """
            )
        }
    )


def test_activate_swaps_the_version_and_closes_the_old_engine(clock):
    """After activate, decisions come from the new version and the old engine is closed."""
    runtime = PolicyRuntime(bundle("one"))
    old = runtime.active
    assert runtime.decide("pkg", Subject("u"), now=clock()).reason == "one"
    engine = old.engine_for("pkg")
    new = runtime.activate(bundle("two"))
    decision = runtime.decide("pkg", Subject("u"), now=clock())
    assert (decision.reason, decision.version) == ("two", new.version)
    assert old.closed and engine.closed
    with pytest.raises(EngineClosedError):
        old.decide("pkg", Subject("u"), now=clock())
    runtime.close()


def test_no_active_version_is_a_lookup_error(clock):
    """Deciding before any version is active raises LookupError."""
    with pytest.raises(LookupError):
        PolicyRuntime().decide("pkg", Subject("u"), now=clock())
