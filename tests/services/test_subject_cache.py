"""The subject cache: a short TTL, cleared by this process's own directory writes."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from policyd.domain import Subject
from policyd.services.subject_cache import SubjectCache
from policyd.store.models import Base, Group, Setting


class Ticks:
    """A monotonic clock that tests move by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ADA = Subject(id="ada", groups=frozenset({"Readers"}))


def test_a_subject_is_served_for_ttl_seconds():
    """Within the TTL the cached subject comes back; at the TTL it is read afresh."""
    ticks = Ticks()
    cache = SubjectCache(2.0, clock=ticks)
    cache.put("ada", ADA, cache.generation)
    ticks.now += 1.999
    assert cache.get("ada") is ADA
    ticks.now += 0.001
    assert cache.get("ada") is None


def test_zero_seconds_turns_the_cache_off():
    """POLICYD_SUBJECT_CACHE_SECONDS=0 keeps nothing."""
    cache = SubjectCache(0)
    cache.put("ada", ADA, cache.generation)
    assert cache.get("ada") is None


def test_a_subject_read_before_a_clear_is_not_kept():
    """A read that began before a directory write may hold old data: it is dropped."""
    cache = SubjectCache(2.0)
    generation = cache.generation  # the read starts
    cache.clear()  # a write commits meanwhile
    cache.put("ada", ADA, generation)
    assert cache.get("ada") is None


def test_commits_that_write_the_directory_clear_it(tmp_path):
    """A watched session that commits a directory change clears the cache; other commits
    and rollbacks leave it."""
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine)
    cache = SubjectCache(60)
    cache.watch(sessions)

    def cached_after(change) -> bool:
        cache.put("ada", ADA, cache.generation)
        with sessions() as session:
            change(session)
        return cache.get("ada") is not None

    def setting(session):
        from datetime import UTC, datetime

        session.add(Setting(key="k", value="v", updated_at=datetime.now(UTC)))
        session.commit()

    def group_rolled_back(session):
        session.add(Group(id="g2"))
        session.flush()
        session.rollback()

    def group(session):
        session.add(Group(id="g1"))
        session.commit()

    def statement(session):
        from sqlalchemy import delete

        session.execute(delete(Group))
        session.commit()

    assert cached_after(setting)
    assert cached_after(group_rolled_back)
    assert not cached_after(group)
    assert not cached_after(statement)
    engine.dispose()
