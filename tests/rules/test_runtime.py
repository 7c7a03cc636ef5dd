"""The active policy version and its atomic swap."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping

import pytest

from policyd.domain import Subject
from policyd.rules import EngineClosedError, Policy, PolicyRuntime, load_texts
from policyd.rules.packed import pack_bundle, unpack_bundle
from tests.conftest import rule_file


def bundle(reason: str, packages: tuple[str, ...] = ("pkg",)):
    return load_texts(
        {
            f"{package}.yaml": rule_file(
                f"""
                apiVersion: policyd/v1
                package:
                  id: {package}
                  displayName: P
                  rules:
                    - {{id: r, then: {{decision: deny, reason: {reason}}}}}
                """
            )
            for package in packages
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


def test_a_package_is_compiled_when_first_decided_and_at_most_resident_stay(clock):
    """Only decided packages are compiled; past `resident` the least recently used is
    released, and decides again (compiled anew) when next asked for."""
    policy = Policy(bundle("one", ("a", "b", "c")), resident=2)
    assert policy.resident_ids() == []
    for package in ("a", "b", "a", "c"):
        assert policy.decide(package, Subject("u"), now=clock()).reason == "one"
    assert policy.resident_ids() == ["a", "c"]  # b was least recently used
    released = policy.engine_for("a")
    assert policy.decide("b", Subject("u"), now=clock()).reason == "one"
    assert policy.resident_ids() == ["a", "b"]
    assert not released.closed
    policy.close()


def test_a_switch_compiles_what_the_old_version_held_before_it_swaps(clock):
    """The new version starts with the packages the old one had compiled, nothing more."""
    runtime = PolicyRuntime(bundle("one", ("a", "b", "c")))
    runtime.decide("c", Subject("u"), now=clock())
    runtime.decide("a", Subject("u"), now=clock())
    fresh = runtime.activate(bundle("two", ("a", "b", "c")))
    assert fresh.resident_ids() == ["c", "a"]
    runtime.close()


class Gated(Mapping):
    """Packages whose reading waits for `gate`: a version build held in the middle."""

    def __init__(self, inner: Mapping, gate: threading.Event, reading: threading.Event):
        self.inner, self.gate, self.reading = inner, gate, reading

    def __getitem__(self, key):
        self.reading.set()
        assert self.gate.wait(30)
        return self.inner[key]

    def __iter__(self):
        return iter(self.inner)

    def __len__(self):
        return len(self.inner)


def test_a_switch_leaves_every_concurrent_decision_to_one_whole_version_and_none_waits(clock):
    """Four threads decide while a version switch is held mid-build: they go on being answered
    by the old version meanwhile (no decision waits for the build), each decision's version is
    the one whose rule decided it, and once the switch returns only the new version answers."""
    one, two = bundle("one"), unpack_bundle(pack_bundle(bundle("two")))
    gate, reading = threading.Event(), threading.Event()
    held = dataclasses.replace(two, packages=Gated(two.packages, gate, reading))
    runtime = PolicyRuntime(one)
    runtime.decide("pkg", Subject("u"), now=clock())  # resident: the switch will compile it
    answers: list[list[tuple[str, str | None]]] = [[] for _ in range(4)]  # per thread
    stop = threading.Event()

    def decide_until_stopped(mine: list) -> None:
        while not stop.is_set():
            decision = runtime.decide("pkg", Subject("u"), now=clock())
            mine.append((decision.version, decision.reason))

    def answered() -> int:
        return sum(len(mine) for mine in answers)

    threads = [threading.Thread(target=decide_until_stopped, args=(m,)) for m in answers]
    for thread in threads:
        thread.start()
    switch = threading.Thread(target=runtime.activate, args=(held,))
    switch.start()
    try:
        assert reading.wait(30)
        during = answered()
        deadline = time.monotonic() + 30
        while answered() < during + 500 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert answered() >= during + 500  # answered while the build waits
        assert {version for mine in answers for version, _ in mine} == {one.version.id}
    finally:
        gate.set()
        switch.join(30)
    after = [len(mine) for mine in answers]
    deadline = time.monotonic() + 30
    while answered() < sum(after) + 500 and time.monotonic() < deadline:
        time.sleep(0.001)
    stop.set()
    for thread in threads:
        thread.join(30)
    runtime.close()
    whole = {(one.version.id, "one"), (two.version.id, "two")}
    # Both versions answered, never one version's rule under the other's id.
    assert {answer for mine in answers for answer in mine} == whole
    # A thread's decision under way when the switch returned may still be the old version's;
    # every one it started later is the new version's.
    later = {
        version for mine, n in zip(answers, after, strict=True) for version, _ in mine[n + 1 :]
    }
    assert later == {two.version.id}
