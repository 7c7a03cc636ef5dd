"""Stored versions: their packed form, versions that no longer load (published under older
checks) never stop a process, and following the active one without blocking decisions."""

from __future__ import annotations

import logging
import threading

import pytest

from policyd.rules import PolicyRuntime, load_texts
from policyd.rules.packed import pack_bundle
from policyd.services.actor import Actor, Role
from policyd.services.errors import InvalidError
from policyd.services.versions import ACTIVE_KEY, PolicySync, VersionService
from policyd.store.models import PolicyVersion, Setting

ADMIN = Actor("ops", Role.ADMIN)
# A lifetime that never ends: older versions of policyd published it, then failed every
# decision on it; this one refuses to load it.
OLD_FILES = {
    "never.yaml": "apiVersion: policyd/v1\npackage:\n  id: never\n  displayName: Never\n"
    "  rules:\n    - id: all\n      then:\n        decision: auto_approve\n"
    '        lifetime: {until: {cron: "0 0 31 2 *"}}\n'
}


@pytest.fixture
def stored(store, example_bundle, clock):
    """The examples published and active, and an old version stored as if published before
    the current checks; returns its id."""
    with store.session() as session:
        VersionService(session).publish(ADMIN, example_bundle.files, message="good", now=clock())
        session.add(
            PolicyVersion(
                id="0ldversi0n00",
                content_hash="0" * 64,
                files=OLD_FILES,
                author="ops",
                message="old",
                created_at=clock(),
                packages=["never"],
            )
        )
        session.commit()
    return "0ldversi0n00"


def test_a_stored_version_that_no_longer_loads_cannot_be_activated(store, stored, clock):
    """Activating it is refused with its file:line problems, and the active version stays."""
    with store.session() as session:
        service = VersionService(session)
        before = service.active_id()
        with pytest.raises(InvalidError) as caught:
            service.activate(ADMIN, stored, now=clock())
        assert caught.value.field == "id"
        assert caught.value.errors == [
            "never.yaml:9: package.rules[0].then.lifetime.until.cron: cron '0 0 31 2 *' never fires"
        ]
    with store.session() as session:
        assert VersionService(session).active_id() == before


def test_a_process_keeps_its_version_when_the_active_one_no_longer_loads(
    store, stored, example_bundle, caplog
):
    """If the database names such a version active, sync logs why and decides on with the
    version it has, instead of failing every request."""
    runtime = PolicyRuntime()
    sync = PolicySync(runtime, store.session)
    try:
        assert sync.sync() == example_bundle.version.id
        with store.session() as session:
            session.get(Setting, ACTIVE_KEY).value = stored
            session.commit()
        with caplog.at_level(logging.ERROR, logger="policyd.services.versions"):
            assert sync.sync() == stored
            assert sync.sync() == stored  # tried once: no second error
        assert runtime.active.version == example_bundle.version.id
        (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]  # not "loaded"
        assert f"policy version {stored} does not load with this policyd" in record.getMessage()
        assert "cron '0 0 31 2 *' never fires" in record.getMessage()
    finally:
        runtime.close()


def test_publishing_stores_the_packed_form_that_processes_load(store, example_bundle, clock):
    """A process loads the version from its packed form: the same packages, no files parsed."""
    with store.session() as session:
        service = VersionService(session)
        version = service.publish(ADMIN, example_bundle.files, message="m", now=clock())
        assert version.packed.startswith('{"content_hash"')
        loaded = service.bundle(version.id)
    assert loaded.files == {}  # not parsed from the files
    assert dict(loaded.packages) == load_texts(example_bundle.files).packages
    assert loaded.version.id == example_bundle.version.id


@pytest.mark.parametrize(
    "packed",
    [None, '{"format": "policyd-packed/0"}', "not json", "wrong hash"],
    ids=["none", "older format", "not json", "another version's"],
)
def test_a_version_without_a_usable_packed_form_loads_from_its_files(
    store, example_bundle, clock, packed
):
    """Versions published before packing, or packed otherwise, are parsed and validated."""
    with store.session() as session:
        service = VersionService(session)
        version = service.publish(ADMIN, example_bundle.files, message="m", now=clock())
        if packed == "wrong hash":
            other = load_texts({"p.yaml": OLD_FILES["never.yaml"].replace("31 2", "1 1")})
            packed = pack_bundle(other)
        version.packed = packed
        session.commit()
        loaded = service.bundle(version.id)
    assert loaded.files == example_bundle.files
    assert loaded.packages == load_texts(example_bundle.files).packages


def test_a_background_sync_keeps_deciding_with_the_old_version_until_the_new_is_built(
    store, example_bundle, clock, monkeypatch
):
    """maybe_sync returns at once while the new version builds in its own thread; the
    runtime swaps only when that build is done."""
    with store.session() as session:
        first = VersionService(session).publish(
            ADMIN, example_bundle.files, message="one", now=clock()
        )
    runtime = PolicyRuntime()
    sync = PolicySync(runtime, store.session, interval=0, background=True)
    try:
        sync.sync()
        assert runtime.active.version == first.id
        changed = dict(example_bundle.files)
        changed["extra.yaml"] = OLD_FILES["never.yaml"].replace("31 2", "1 1")
        with store.session() as session:
            second = VersionService(session).publish(ADMIN, changed, message="two", now=clock())
        gate, building = threading.Event(), threading.Event()
        load = VersionService.bundle

        def held(service, version_id):
            building.set()
            assert gate.wait(30)
            return load(service, version_id)

        monkeypatch.setattr(VersionService, "bundle", held)
        sync.maybe_sync()  # returns without waiting for the build
        assert building.wait(30)
        assert runtime.active.version == first.id
        gate.set()
        sync.join(30)
        assert runtime.active.version == second.id
    finally:
        gate.set()
        runtime.close()
