"""The directory service: users, groups and memberships, connected organisations, subjects."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from policyd.domain import Subject, UserType
from policyd.services.actor import Actor, Role
from policyd.services.directory import KEEP, DirectoryService, check_id
from policyd.services.directory.admin import DirectoryAdmin
from policyd.services.errors import ConflictError, InvalidError, NotFoundError
from policyd.services.subject_cache import SubjectCache
from policyd.store.models import AuditRecord, User
from tests.services.test_subject_cache import Ticks

ROOT = Actor("root", Role.ADMIN)
SAM = {"email": "sam@contoso.com", "department": "Sales", "manager_id": "max"}


@pytest.fixture
def directory(session, clock) -> DirectoryService:
    """A directory with max, and sam who reports to max."""
    service = DirectoryService(session)
    service.put_user(ROOT, "max", {"email": "max@contoso.com"}, now=clock())
    service.put_user(ROOT, "sam", SAM, now=clock(), external_manager=False)
    session.commit()
    return service


def actions(session) -> list[str]:
    """The audited actions in chain order (records are chained when the session commits)."""
    session.commit()
    return list(session.scalars(select(AuditRecord.action).order_by(AuditRecord.id)))


# users ----------------------------------------------------------------------------------------
def test_put_user_with_keep_missing_and_no_fields_changes_nothing(directory, clock):
    """Fields left out keep their value (the API's PUT)."""
    before = {**directory.get_user("sam").__dict__}
    directory.put_user(ROOT, "sam", {}, now=clock(), keep_missing=True)
    user = directory.get_user("sam")
    assert (user.email, user.department, user.manager_id) == (
        before["email"],
        before["department"],
        before["manager_id"],
    )


def test_put_user_sets_the_fields_given_and_none_clears_one(directory, clock):
    """Only the fields given change; None clears a field."""
    data = {"department": None, "job_title": "Rep"}
    user = directory.put_user(ROOT, "sam", data, now=clock(), keep_missing=True)
    assert (user.department, user.job_title) == (None, "Rep")
    assert (user.email, user.manager_id) == ("sam@contoso.com", "max")


def test_put_user_without_keep_missing_resets_what_is_left_out(directory, clock):
    """An import replaces the whole record: type back to member, attributes empty."""
    user = directory.put_user(ROOT, "sam", {"email": "s@contoso.com"}, now=clock())
    assert (user.email, user.department, user.type, user.attributes) == (
        "s@contoso.com",
        None,
        "member",
        {},
    )


def test_a_manager_must_be_in_the_directory_unless_external(directory, clock):
    """manager_id names a directory user unless external; a refused user is not stored."""
    with pytest.raises(InvalidError) as err:
        directory.put_user(
            ROOT, "zed", {"manager_id": "nobody"}, now=clock(), external_manager=False
        )
    assert err.value.field == "manager_id"
    with pytest.raises(NotFoundError):
        directory.get_user("zed")
    directory.put_user(ROOT, "zed", {"manager_id": "max"}, now=clock(), external_manager=False)
    outside = directory.put_user(ROOT, "zed", {"manager_id": "boss@partner"}, now=clock())
    assert outside.manager_id == "boss@partner"


def test_creating_and_updating_a_user_is_audited(directory, session, clock):
    """A new user is `created`, a changed one `updated`."""
    directory.put_user(ROOT, "sam", {"job_title": "Rep"}, now=clock(), keep_missing=True)
    assert actions(session) == [
        "directory.user_created",
        "directory.user_created",
        "directory.user_updated",
    ]


@pytest.mark.parametrize(
    ("bad", "why"), [("", "1 to 200"), ("x" * 201, "1 to 200"), ("a\x00b", "NUL")]
)
def test_check_id_names_the_field_of_a_bad_id(bad, why):
    """An id is 1 to 200 characters without NUL; the error names the field."""
    with pytest.raises(InvalidError) as err:
        check_id(bad, field="group")
    assert why in err.value.message and err.value.field == "group"


def test_list_users_pages_in_id_order(directory):
    """One page of users, sorted by id, and the total."""
    users, total = directory.list_users(offset=1, limit=1)
    assert [u.id for u in users] == ["sam"] and total == 2


# groups and memberships ------------------------------------------------------------------------
def test_put_group_creates_it_and_keep_leaves_the_name(directory, clock):
    """None creates an unnamed group; KEEP leaves a name in place; None clears it."""
    assert directory.put_group(ROOT, "G", None, now=clock()).display_name is None
    directory.put_group(ROOT, "G", "Sales", now=clock())
    assert directory.put_group(ROOT, "G", KEEP, now=clock()).display_name == "Sales"
    assert directory.put_group(ROOT, "G", None, now=clock()).display_name is None


def test_get_group_of_an_unknown_id_is_not_found(directory):
    """No such group: NotFoundError naming the id."""
    with pytest.raises(NotFoundError) as err:
        directory.get_group("nope")
    assert err.value.field == "id"


def test_add_member_is_idempotent(directory, session, clock):
    """Adding a member twice adds once; removing twice removes once (a commit each, as the
    API makes)."""
    directory.put_group(ROOT, "G", None, now=clock())
    assert directory.add_member(ROOT, "G", "sam", now=clock()) is True
    session.commit()
    assert directory.add_member(ROOT, "G", "sam", now=clock()) is False
    assert directory.members("G") == (["sam"], 1)
    assert directory.remove_member(ROOT, "G", "sam", now=clock()) is True
    session.commit()
    assert directory.remove_member(ROOT, "G", "sam", now=clock()) is False


def test_add_member_needs_the_group_and_the_user(directory, clock):
    """An unknown group names `group`; an unknown user names `id`."""
    with pytest.raises(NotFoundError) as err:
        directory.add_member(ROOT, "nope", "sam", now=clock())
    assert err.value.field == "group"
    directory.put_group(ROOT, "G", None, now=clock())
    with pytest.raises(NotFoundError):
        directory.add_member(ROOT, "G", "nobody", now=clock())


def test_bulk_membership_changes_return_who_changed(directory, session, clock):
    """add_members skips those already in; remove_members returns those it removed."""
    directory.put_group(ROOT, "G", None, now=clock())
    directory.add_member(ROOT, "G", "max", now=clock())
    assert directory.add_members(ROOT, "G", ["max", "sam"], now=clock()) == ["sam"]
    assert directory.remove_members(ROOT, "G", ["sam", "zed"], now=clock()) == ["sam"]
    assert directory.add_members(ROOT, "G", [], now=clock()) == []
    assert actions(session).count("directory.member_added") == 2


# connected organisations ------------------------------------------------------------------------
FABRIKAM = {"display_name": "Fabrikam", "domains": ["Fabrikam.com "], "internal_sponsors": ["max"]}


def test_put_organization_with_keep_missing_keeps_domains_and_sponsors(directory, clock):
    """Renaming an organisation does not drop its domains or sponsors (normalised)."""
    directory.put_organization(ROOT, "fab", FABRIKAM, now=clock())
    renamed = directory.put_organization(
        ROOT, "fab", {"display_name": "F"}, now=clock(), keep_missing=True
    )
    assert (renamed.display_name, renamed.domains, renamed.internal_sponsors) == (
        "F",
        ["fabrikam.com"],
        ["max"],
    )


def test_a_domain_belongs_to_one_organization(directory, clock):
    """A second organisation claiming a domain is a conflict naming `domains`."""
    directory.put_organization(ROOT, "fab", FABRIKAM, now=clock())
    with pytest.raises(ConflictError) as err:
        directory.put_organization(ROOT, "other", {"domains": ["fabrikam.com"]}, now=clock())
    assert err.value.field == "domains"


def test_organization_for_a_subject_is_set_or_found_by_domain(directory, clock):
    """The user's organization_id wins; otherwise the one owning their e-mail domain."""
    directory.put_organization(ROOT, "fab", FABRIKAM, now=clock())
    directory.put_organization(ROOT, "woodgrove", {}, now=clock())
    by_domain = Subject("fay", email="fay@fabrikam.com")
    assert directory.organization_for(by_domain).id == "fab"
    assert directory.organization_for(Subject("x", organization="woodgrove")).id == "woodgrove"
    assert directory.organization_for(Subject("nobody", email="n@elsewhere.org")) is None


def test_get_organization_of_an_unknown_id_is_not_found(directory):
    """No such organisation: NotFoundError naming the id."""
    with pytest.raises(NotFoundError):
        directory.get_organization("nope")


# subjects ---------------------------------------------------------------------------------------
def test_resolve_subject_reads_groups_and_the_organization_of_the_domain(directory, session, clock):
    """The subject carries the user's fields, groups and organisation (by domain)."""
    directory.put_organization(ROOT, "contoso", {"domains": ["contoso.com"]}, now=clock())
    directory.put_group(ROOT, "G", None, now=clock())
    directory.add_member(ROOT, "G", "sam", now=clock())
    session.commit()
    subject = directory.resolve_subject("sam")
    assert (subject.groups, subject.organization, subject.manager, subject.type) == (
        frozenset({"G"}),
        "contoso",
        "max",
        UserType.MEMBER,
    )


def test_only_a_trusted_caller_overlays_or_invents_a_subject(directory):
    """Supplied values count for a trusted caller only, and only such a one may name a
    subject the directory lacks."""
    supplied = Subject("sam", department="Treasury", groups=frozenset({"X"}))
    assert directory.resolve_subject("sam", supplied).department == "Sales"
    trusted = directory.resolve_subject("sam", supplied, trusted=True)
    assert (trusted.department, trusted.groups) == ("Treasury", frozenset({"X"}))
    assert directory.resolve_subject("ghost", Subject("ghost"), trusted=True).id == "ghost"
    with pytest.raises(NotFoundError) as err:
        directory.resolve_subject("ghost", Subject("ghost"))
    assert err.value.field == "subject.id"


# the API's operations ---------------------------------------------------------------------------
def test_directory_admin_commits_each_change(store, clock):
    """What DirectoryAdmin changes is visible to another session at once."""
    with store.session() as writer, store.session() as reader:
        DirectoryAdmin(writer).put_user(ROOT, "ada", {}, now=clock())
        DirectoryAdmin(writer).put_group(ROOT, "G", None, now=clock())
        DirectoryAdmin(writer).add_member(ROOT, "G", "ada", now=clock())
        assert DirectoryService(reader).members("G") == (["ada"], 1)


def test_a_cached_subject_due_for_a_refresh_is_read_again_by_the_deferred_work(
    directory, session, clock
):
    """A decision past three quarters of an entry's life gets the cached subject at once and
    hands the refresh to `defer`; run, it reads what the directory holds now, so the next
    decision sees a change made elsewhere before the entry would lapse. A subject gone from
    the directory is dropped."""
    ticks = Ticks()
    cache = SubjectCache(2.0, clock=ticks, draw=lambda: 0.0)
    first = directory.resolve_subject("sam", cache=cache)
    assert first.department == "Sales"
    # Another process changes sam (this process's cache is not told).
    session.execute(update(User).where(User.id == "sam").values(department="Finance"))
    deferred: list = []
    ticks.now += 1.5
    again = directory.resolve_subject("sam", cache=cache, defer=deferred.append)
    assert again is first and len(deferred) == 1
    assert directory.resolve_subject("sam", cache=cache, defer=deferred.append) is first
    assert len(deferred) == 1  # handed out once
    deferred.pop()()
    assert directory.resolve_subject("sam", cache=cache).department == "Finance"
    ticks.now += 1.5
    session.execute(update(User).where(User.id == "sam").values(state="deleted"))
    directory.resolve_subject("sam", cache=cache, defer=deferred.append)
    deferred.pop()()
    with pytest.raises(NotFoundError):
        directory.resolve_subject("sam", cache=cache)
