"""Delivery targets: the person behind each job, with their directory details."""

from __future__ import annotations

from types import SimpleNamespace

from policyd.connectors.base import Target
from policyd.domain import UserType
from policyd.services.targets import delivery_targets


def job(job_id: str, subject: str, resource: str = "group:G", role: str = "member"):
    return SimpleNamespace(id=job_id, subject_id=subject, resource=resource, role=role)


def test_no_jobs_read_nothing(session):
    """An empty batch has no targets."""
    assert delivery_targets(session, []) == {}


def test_a_known_person_carries_their_directory_details(session, people):
    """ada's and fab's jobs name their email and type; the operation id is the job's."""
    targets = delivery_targets(session, [job("j1", "ada"), job("j2", "fab", "group:H", "owner")])
    assert targets["j1"] == Target(
        user_id="ada",
        resource="group:G",
        role="member",
        email="ada@contoso.com",
        user_type=UserType.MEMBER,
        display_name=None,
        operation_id="j1",
    )
    assert (targets["j2"].user_type, targets["j2"].role, targets["j2"].resource) == (
        UserType.GUEST,
        "owner",
        "group:H",
    )


def test_a_person_the_directory_does_not_know_is_a_bare_target(session, people):
    """A subject not in the directory still gets a target: their id, no email."""
    (target,) = delivery_targets(session, [job("j1", "ghost")]).values()
    assert target == Target("ghost", "group:G", "member", operation_id="j1")
    assert target.email is None


def test_two_jobs_of_one_person_read_them_once_and_get_a_target_each(session, people):
    """Every job has its own target, even for the same person."""
    targets = delivery_targets(session, [job("j1", "bob"), job("j2", "bob", "group:H")])
    assert sorted(targets) == ["j1", "j2"]
    assert {t.email for t in targets.values()} == {"bob@contoso.com"}
