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
    """Within the TTL the cached subject comes back; at the TTL it is read afresh (an entry
    drawn to live the longest)."""
    ticks = Ticks()
    cache = SubjectCache(2.0, clock=ticks, draw=lambda: 0.0)
    cache.put("ada", ADA, cache.generation)
    ticks.now += 1.999
    assert cache.get("ada") is ADA
    ticks.now += 0.001
    assert cache.get("ada") is None


def test_subjects_cached_together_lapse_apart_within_the_last_quarter_of_the_ttl():
    """Each entry lives between 0.75 x ttl and ttl, drawn at random: a worker's subjects,
    read in its first requests, are not all read again in one burst of requests."""
    ticks = Ticks()
    cache = SubjectCache(2.0, clock=ticks)
    ids = [f"user-{n}" for n in range(200)]
    for subject_id in ids:
        cache.put(subject_id, Subject(id=subject_id), cache.generation)
    lapsed_at: dict[str, float] = {}
    for step in range(1, 201):
        ticks.now = 100.0 + step * 0.01
        for subject_id in ids:
            if subject_id not in lapsed_at and cache.get(subject_id) is None:
                lapsed_at[subject_id] = ticks.now - 100.0
    assert sorted(lapsed_at) == sorted(ids)
    assert min(lapsed_at.values()) >= 1.5 - 1e-9 and max(lapsed_at.values()) <= 2.0 + 1e-9
    # Spread over the quarter, not lapsing together: no tenth of it holds over half of them.
    buckets = [round((at - 1.5) // 0.05) for at in lapsed_at.values()]
    assert max(buckets.count(bucket) for bucket in set(buckets)) < 100
    assert len(set(buckets)) >= 8


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


def test_an_entry_is_due_for_one_refresh_from_three_quarters_of_its_life():
    """Before three quarters of its life an entry is not due; from then on the first lookup
    hands out the refresh, later ones do not until it is put back (or the refresh failed);
    it still lapses at its ttl."""
    ticks = Ticks()
    cache = SubjectCache(2.0, clock=ticks, draw=lambda: 0.0)
    cache.put("ada", ADA, cache.generation)
    ticks.now += 1.499
    assert cache.lookup("ada") == (ADA, False)
    ticks.now += 0.001
    assert cache.lookup("ada") == (ADA, True)
    assert cache.lookup("ada") == (ADA, False)
    cache.refresh_failed("ada")
    assert cache.lookup("ada") == (ADA, True)
    newer = Subject(id="ada", groups=frozenset({"Writers"}))
    cache.put("ada", newer, cache.generation)
    assert cache.lookup("ada") == (newer, False)
    ticks.now += 2.0
    assert cache.lookup("ada") == (None, False)
