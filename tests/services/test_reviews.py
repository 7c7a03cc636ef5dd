"""Access reviews: opening on schedule, reviewers, decisions, reminders, results, export."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from policyd.connectors.config import Connectors, load_instances
from policyd.periodic import TaskContext
from policyd.services.actor import SYSTEM, Actor, Role
from policyd.services.assignments import AssignmentService
from policyd.services.directory import DirectoryService
from policyd.services.errors import ConflictError, ForbiddenError, InvalidError, NotFoundError
from policyd.services.memberships import DirectoryMemberships
from policyd.services.notifications import render
from policyd.services.review_campaigns import outcome
from policyd.services.reviews import ReviewService, close_reviews, open_reviews, remind_reviewers
from policyd.store import Database
from policyd.store.models import AuditRecord, Job, Membership, ReviewCampaign, ReviewItem
from tests.review_support import ENDS, NOW, STALE, World, make_world, reviewed_package

MAX = Actor("max", Role.USER)
OLIVIA = Actor("olivia", Role.USER)
ADMIN = Actor("root", Role.ADMIN)
PEOPLE = {
    "pat": {"manager_id": "max"},
    "sue": {"manager_id": "max"},
    "quinn": {},
    "max": {},
    "olivia": {},
}


@pytest.fixture
def world(store: Database) -> Iterator[World]:
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    made = make_world(store, connectors, reviewed_package())
    made.people(PEOPLE)
    yield made
    connectors.close()
    made.runtime.close()


def service(world: World, session) -> ReviewService:
    return ReviewService(session, world.runtime)


def open_campaign(world: World, *subjects: str) -> dict[str, str]:
    """Grant crm to `subjects`, open the review; item id by subject."""
    world.grant("crm", *subjects)
    with world.session() as session:
        assert service(world, session).open_due(now=NOW) == 1
        return dict(session.execute(select(ReviewItem.subject_id, ReviewItem.id)).all())


def decide(world: World, actor: Actor, item: str, decision: str, why: str | None = "ok"):
    with world.session() as session:
        return service(world, session).decide(actor, item, decision, why, now=NOW)


def close(world: World, now=ENDS) -> int:
    with world.session() as session:
        return service(world, session).close_due(now=now)


def test_a_due_review_opens_one_campaign_with_an_item_per_live_assignment(world):
    """The schedule fired on 1 January: one campaign until the 15th, one item per holder."""
    items = open_campaign(world, "pat", "quinn")
    assert sorted(items) == ["pat", "quinn"]
    with world.session() as session:
        campaign = session.scalars(select(ReviewCampaign)).one()
        assert (campaign.state, campaign.ends_at) == ("open", ENDS)
        assert campaign.version == world.runtime.active.version


def test_opening_again_in_the_same_period_opens_nothing(world):
    """open_due is idempotent: a second sweep in the period finds the campaign."""
    open_campaign(world, "pat")
    with world.session() as session:
        assert service(world, session).open_due(now=NOW + timedelta(days=3)) == 0
    assert world.count(ReviewCampaign) == 1


def test_a_period_already_over_opens_no_campaign(world):
    """After the 15th nothing opens until the schedule fires again on 1 April."""
    world.grant("crm", "pat")
    with world.session() as session:
        assert service(world, session).open_due(now=ENDS + timedelta(days=1)) == 0


def test_the_manager_reviews_and_the_owners_are_the_fallback(world):
    """pat's manager max reviews pat; quinn has no manager, so the owner olivia does."""
    open_campaign(world, "pat", "quinn")
    with world.session() as session:
        mine, total = service(world, session).items(MAX)
        assert (total, [i.subject_id for i in mine]) == (1, ["pat"])
        theirs, _ = service(world, session).items(OLIVIA)
        assert [i.subject_id for i in theirs] == ["quinn"]


def test_nobody_is_their_own_reviewer_through_the_fallback(world):
    """olivia holds crm and owns it: she is not her own reviewer; only an admin decides."""
    items = open_campaign(world, "olivia")
    with world.session() as session:
        assert service(world, session).items(OLIVIA)[1] == 0
    with pytest.raises(ForbiddenError):
        decide(world, OLIVIA, items["olivia"], "keep")
    assert decide(world, ADMIN, items["olivia"], "keep").decided_by == "root"


def test_only_an_assigned_reviewer_decides(world):
    """olivia reviews quinn, not pat: pat's item does not exist for her."""
    items = open_campaign(world, "pat", "quinn")
    with pytest.raises(NotFoundError):
        decide(world, OLIVIA, items["pat"], "remove")


def test_a_decision_needs_a_justification(world):
    """An empty justification is refused, naming the field."""
    items = open_campaign(world, "pat")
    with pytest.raises(InvalidError) as refused:
        decide(world, MAX, items["pat"], "keep", "  ")
    assert refused.value.field == "justification"


def test_a_decision_is_keep_or_remove(world):
    items = open_campaign(world, "pat")
    with pytest.raises(InvalidError) as refused:
        decide(world, MAX, items["pat"], "maybe")
    assert refused.value.field == "decision"


def test_a_decided_item_leaves_the_reviewers_pending_list_and_is_audited(world):
    """The decision records who, when and the rule version, in the item and the audit."""
    items = open_campaign(world, "pat")
    decided = decide(world, MAX, items["pat"], "keep", "still on the team")
    assert (decided.decision, decided.decided_by, decided.decided_at) == ("keep", "max", NOW)
    with world.session() as session:
        assert service(world, session).items(MAX)[1] == 0
        record = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "review.decided")
        ).one()
    assert (record.actor, record.object_id) == ("max", items["pat"])
    assert record.version == world.runtime.active.version
    assert record.after["justification"] == "still on the team"


def test_a_closed_campaign_takes_no_decisions(world):
    items = open_campaign(world, "pat")
    close(world)
    with pytest.raises(ConflictError):
        decide(world, MAX, items["pat"], "keep")


def test_closing_removes_unreviewed_access_and_keeps_what_was_kept(world):
    """remove on no response: sue's undecided access is revoked through the outbox, pat's
    kept access stays, both in the audit."""
    world.grant("crm", "pat", "sue")
    with world.session() as session:
        service(world, session).open_due(now=NOW)
        items = dict(session.execute(select(ReviewItem.subject_id, ReviewItem.id)).all())
    decide(world, MAX, items["pat"], "keep")
    assert close(world) == 1
    world.worker.run_jobs(now=ENDS, limit=100)
    with world.session() as session:
        members = set(session.scalars(select(Membership.user_id)))
        results = dict(session.execute(select(ReviewItem.subject_id, ReviewItem.result)).all())
        applied = session.scalars(
            select(AuditRecord.after).where(AuditRecord.action == "review.applied")
        ).all()
    assert results == {"pat": "kept", "sue": "removed"}
    assert {"pat", "sue"} & members == {"pat"}
    assert sorted((a["subject_id"], a["result"], a["basis"]) for a in applied) == [
        ("pat", "kept", "decision"),
        ("sue", "removed", "no response"),
    ]


def test_closing_is_idempotent(world):
    open_campaign(world, "pat")
    assert close(world) == 1
    assert close(world) == 0


def test_a_campaign_is_not_closed_before_its_end(world):
    open_campaign(world, "pat")
    assert close(world, now=ENDS - timedelta(seconds=1)) == 0


def test_reminders_go_to_reviewers_with_undecided_items_once_per_offset(world):
    """Seven days before the end max (one item open) is reminded, once; olivia, who decided
    hers, is not."""
    items = open_campaign(world, "pat", "quinn")
    decide(world, OLIVIA, items["quinn"], "keep")
    with world.session() as session:
        assert service(world, session).remind_due(now=ENDS - timedelta(days=8)) == 0
        assert service(world, session).remind_due(now=ENDS - timedelta(days=7)) == 1
        assert service(world, session).remind_due(now=ENDS - timedelta(days=6)) == 0
        reminded = session.scalars(
            select(Job.subject_id).where(Job.resource.like("review_reminder:%"))
        ).all()
    assert reminded == ["max"]


def test_reviewers_are_told_when_a_campaign_opens(world):
    open_campaign(world, "pat", "quinn")
    with world.session() as session:
        told = session.scalars(
            select(Job.subject_id).where(Job.resource.like("review_needed:%"))
        ).all()
    assert sorted(told) == ["max", "olivia"]


def test_a_self_review_lets_holders_decide_their_own_access(store: Database):
    """reviewers: [self]: pat reviews pat."""
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    world = make_world(store, connectors, reviewed_package(reviewers="[self]"))
    try:
        world.people(PEOPLE)
        items = open_campaign(world, "pat")
        assert decide(world, Actor("pat", Role.USER), items["pat"], "keep").decision == "keep"
    finally:
        connectors.close()
        world.runtime.close()


def test_the_recommendation_decides_unanswered_items(store: Database):
    """onNoResponse: recommendation: no sign-in for 120 days is removed, a recent sign-in
    (no recommendation) kept; the recommendation and its rule are on the item."""
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    text = reviewed_package(on_no_response="recommendation", extra=STALE)
    world = make_world(store, connectors, text)
    try:
        world.people(
            {
                **PEOPLE,
                "pat": {"manager_id": "max", "attributes": {"lastSignIn": "2025-09-07"}},
                "sue": {"manager_id": "max", "attributes": {"lastSignIn": "2026-01-02"}},
            }
        )
        open_campaign(world, "pat", "sue")
        with world.session() as session:
            rows = session.execute(
                select(ReviewItem.subject_id, ReviewItem.recommendation_rule)
            ).all()
        assert dict(rows) == {"pat": "no-sign-in-for-90-days", "sue": None}
        close(world)
        with world.session() as session:
            results = dict(session.execute(select(ReviewItem.subject_id, ReviewItem.result)).all())
        assert results == {"pat": "removed", "sue": "kept"}
    finally:
        connectors.close()
        world.runtime.close()


def test_a_guest_whose_sponsors_left_is_recommended_for_removal(store: Database):
    """The organisation's only sponsor has left: its guest gets the sponsor rule."""
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    text = reviewed_package(on_no_response="recommendation", extra=STALE)
    world = make_world(store, connectors, text)
    try:
        world.people({**PEOPLE, "gus": {"type": "guest", "attributes": {"sponsor": "quinn"}}})
        world.grant("crm", "gus")
        with world.session() as session:
            directory = DirectoryService(session)
            directory.mark_left(SYSTEM, directory.get_user("quinn"), "disabled", now=NOW, ended={})
            session.commit()
        with world.session() as session:
            service(world, session).open_due(now=NOW)
            rule = session.scalar(select(ReviewItem.recommendation_rule))
        assert rule == "guest-whose-sponsor-left"
    finally:
        connectors.close()
        world.runtime.close()


def test_the_export_has_one_row_per_item_with_decision_and_result(world):
    items = open_campaign(world, "pat", "quinn")
    decide(world, MAX, items["pat"], "keep", "needs it, for the Q1 audit")
    close(world)
    with world.session() as session:
        campaign = session.scalar(select(ReviewCampaign.id))
        text = service(world, session).export_csv(ADMIN, campaign)
    rows = {row["subject_id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows["pat"]["decision"] == "keep" and rows["pat"]["result"] == "kept"
    assert rows["pat"]["justification"] == "needs it, for the Q1 audit"
    assert rows["quinn"]["reviewers"] == "olivia" and rows["quinn"]["result"] == "removed"


def test_the_review_notifications_name_the_package_and_the_end(world):
    """review_needed and review_reminder render from the campaign when sent."""
    open_campaign(world, "pat")
    with world.session() as session:
        campaign = session.scalar(select(ReviewCampaign.id))
        subject, text = render(session, "review_reminder", campaign)
    assert subject == "Reminder: access review of crm ends 2026-01-15 00:00 UTC"
    assert campaign in text


def test_any_member_of_a_reviewer_group_decides_but_not_on_their_own_access(store: Database):
    """reviewers: [group:CRM.Leads]: max and olivia review sue; olivia, a lead herself, is
    not among the reviewers of her own access."""
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    world = make_world(store, connectors, reviewed_package(reviewers='["group:CRM.Leads"]'))
    try:
        world.people(PEOPLE)
        with world.session() as session:
            directory = DirectoryService(session)
            directory.put_group(SYSTEM, "CRM.Leads", None, now=NOW)
            for lead in ("max", "olivia"):
                directory.add_member(SYSTEM, "CRM.Leads", lead, now=NOW)
            session.commit()
        items = open_campaign(world, "sue", "olivia")
        with world.session() as session:
            reviewers = ReviewService(session, world.runtime).reviewers_of(list(items.values()))
        assert reviewers[items["sue"]] == ["max", "olivia"]
        assert reviewers[items["olivia"]] == ["max"]
        assert decide(world, OLIVIA, items["sue"], "remove").decided_by == "olivia"
    finally:
        connectors.close()
        world.runtime.close()


SAME_GROUP = """\
apiVersion: policyd/v1
package:
  id: crm-reports
  displayName: CRM reports
  lifetime: {permanent: true}
  resources:
    - {connector: directory, resource: "group:CRM.Users", role: member}
  rules:
    - {id: anyone, then: {decision: auto_approve}}
"""


def test_a_removal_keeps_a_group_another_live_assignment_grants(store: Database):
    """Reference counting: pat's crm is removed by the review, but crm-reports grants the
    same group, so pat stays a member; sue, who held only crm, leaves it."""
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    world = make_world(store, connectors, reviewed_package(), SAME_GROUP)
    try:
        world.people(PEOPLE)
        world.grant("crm-reports", "pat")
        open_campaign(world, "pat", "sue")
        close(world)
        world.worker.run_jobs(now=ENDS, limit=100)
        with world.session() as session:
            members = set(session.scalars(select(Membership.user_id)))
            results = dict(session.execute(select(ReviewItem.subject_id, ReviewItem.result)).all())
        assert results == {"pat": "removed", "sue": "removed"}
        assert {"pat", "sue"} & members == {"pat"}
    finally:
        connectors.close()
        world.runtime.close()


@pytest.mark.parametrize(
    ("decision", "recommendation", "default", "expected"),
    [
        ("keep", "remove", "remove", ("keep", "decision")),
        ("remove", None, "keep", ("remove", "decision")),
        (None, "keep", "remove", ("remove", "no response")),
        (None, "remove", "keep", ("keep", "no response")),
        (None, "remove", "recommendation", ("remove", "recommendation")),
        (None, None, "recommendation", ("keep", "no recommendation")),
    ],
)
def test_an_items_outcome_is_the_decision_else_the_default(
    decision, recommendation, default, expected
):
    """A reviewer's decision always wins; otherwise the campaign's default applies."""
    item = ReviewItem(decision=decision, recommendation=recommendation)
    verdict, basis = outcome(item, default)
    assert (str(verdict), basis) == expected


def test_deciding_again_replaces_the_decision_and_audits_both(world):
    items = open_campaign(world, "pat")
    decide(world, MAX, items["pat"], "keep", "first look")
    decide(world, MAX, items["pat"], "remove", "moved teams")
    with world.session() as session:
        records = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.action == "review.decided")
            .order_by(AuditRecord.id)
        ).all()
    assert [(r.before["decision"], r.after["decision"]) for r in records] == [
        (None, "keep"),
        ("keep", "remove"),
    ]


def test_access_that_ended_during_the_campaign_is_gone_not_removed_again(world):
    """pat removed their own access mid-campaign: closing records `gone`, revokes nothing."""
    items = open_campaign(world, "pat")
    with world.session() as session:
        assignment = session.scalar(select(ReviewItem.assignment_id))
        AssignmentService(session, world.runtime).remove(
            Actor("pat", Role.USER), assignment, now=NOW
        )
    world.worker.run_jobs(now=NOW, limit=100)
    revokes = world.count(Job, kind="revoke")
    close(world)
    with world.session() as session:
        assert session.get(ReviewItem, items["pat"]).result == "gone"
    assert world.count(Job, kind="revoke") == revokes


def test_keep_on_no_response_keeps_unanswered_access(store: Database):
    connectors = Connectors(load_instances(None), DirectoryMemberships(store.session))
    world = make_world(store, connectors, reviewed_package(on_no_response="keep"))
    try:
        world.people(PEOPLE)
        (assignment,) = world.grant("crm", "pat")
        with world.session() as session:
            ReviewService(session, world.runtime).open_due(now=NOW)
        close(world)
        assert world.state(assignment) == "active"
    finally:
        connectors.close()
        world.runtime.close()


def test_an_item_whose_reviewers_all_left_goes_to_the_fallback(world):
    """max leaves mid-campaign: the next reminder sweep hands pat's item to the owner olivia
    (audited, told), who may then decide it; max is not reminded."""
    items = open_campaign(world, "pat")
    with world.session() as session:
        directory = DirectoryService(session)
        directory.mark_left(SYSTEM, directory.get_user("max"), "disabled", now=NOW, ended={})
        session.commit()
    with world.session() as session:
        # olivia is told twice: the item is hers now, and the reminder is due
        assert service(world, session).remind_due(now=ENDS - timedelta(days=7)) == 2
        reviewers = service(world, session).reviewers_of([items["pat"]])[items["pat"]]
        handed = session.scalars(
            select(AuditRecord.after).where(AuditRecord.action == "review.reassigned")
        ).all()
        reminded = session.scalars(
            select(Job.subject_id).where(Job.resource.like("review_reminder:%"))
        ).all()
    assert reviewers == ["max", "olivia"] and reminded == ["olivia"]
    assert handed == [{"reviewer": "olivia", "reason": "every reviewer left"}]
    assert decide(world, OLIVIA, items["pat"], "remove").decided_by == "olivia"


def test_the_periodic_task_functions_open_remind_and_close(world):
    """open_reviews, remind_reviewers and close_reviews run the steps with a TaskContext."""
    world.grant("crm", "pat")
    context = TaskContext(sessions=world.database.session, runtime=world.runtime)
    assert open_reviews(context, NOW) == {"opened": 1}
    assert remind_reviewers(context, ENDS - timedelta(days=7)) == {"reminded": 1}
    assert close_reviews(context, ENDS) == {"closed": 1}
    assert close_reviews(context, ENDS) == {"closed": 0}
