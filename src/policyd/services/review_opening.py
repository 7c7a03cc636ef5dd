"""Opening a review campaign: one item per live assignment, its reviewers and recommendation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import Subject, UserType
from policyd.rules.model import ReviewPolicy
from policyd.rules.review import Advisor, ReviewScope, review_subject
from policyd.store.models import (
    Assignment,
    ConnectedOrganization,
    Membership,
    OrganizationDomain,
    User,
)
from policyd.store.query import among
from policyd.store.types import new_id

ACTIVE_USER = "active"


@dataclass
class Directory:
    """What opening a campaign reads from the directory, loaded in a few bulk queries."""

    users: dict[str, Any] = field(default_factory=dict)  # id -> User row
    groups: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # user -> ids
    members: dict[str, list[str]] = field(default_factory=dict)  # group -> user ids
    sponsors: dict[str, list[str]] = field(default_factory=dict)  # organisation -> user ids
    org_of_domain: dict[str, str] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)  # users known to have left

    def members_of(self, session: Session, group: str) -> list[str]:
        if group not in self.members:
            self.members[group] = list(
                session.scalars(
                    select(Membership.user_id)
                    .where(Membership.group_id == group)
                    .order_by(Membership.user_id)
                )
            )
        return self.members[group]


def load_directory(session: Session, subject_ids: Sequence[str]) -> Directory:
    directory = Directory()
    for start in range(0, len(subject_ids), 5000):
        chunk = subject_ids[start : start + 5000]
        for user in session.scalars(select(User).where(among(session, User.id, chunk))):
            directory.users[user.id] = user
        for user_id, group_id in session.execute(
            select(Membership.user_id, Membership.group_id).where(
                among(session, Membership.user_id, chunk)
            )
        ):
            directory.groups[user_id].add(group_id)
    for org in session.scalars(select(ConnectedOrganization)):
        directory.sponsors[org.id] = [*org.internal_sponsors, *org.external_sponsors]
    for domain, org_id in session.execute(
        select(OrganizationDomain.domain, OrganizationDomain.organization_id)
    ):
        directory.org_of_domain[domain] = org_id
    directory.left = set(session.scalars(select(User.id).where(User.state != ACTIVE_USER)))
    return directory


def subject_of(user: Any, directory: Directory, now: datetime) -> Subject:
    """The holder as the review's recommendations see them (docs/reviews.md)."""
    domain = user.email.rsplit("@", 1)[-1].strip().lower() if user.email else ""
    organization = user.organization_id or directory.org_of_domain.get(domain)
    sponsor_left = None
    if user.type == UserType.GUEST:
        sponsors = directory.sponsors.get(organization or "", [])
        named = (user.attributes or {}).get("sponsor")
        if isinstance(named, str) and named:
            sponsors = [named]
        sponsor_left = bool(sponsors) and all(s in directory.left for s in sponsors)
    try:
        user_type = UserType(user.type)
    except ValueError:
        user_type = UserType.MEMBER
    subject = Subject(
        id=user.id,
        email=user.email,
        type=user_type,
        groups=frozenset(directory.groups.get(user.id, ())),
        manager=user.manager_id,
        organization=organization,
        department=user.department,
        job_title=user.job_title,
        employee_type=user.employee_type,
        attributes=dict(user.attributes or {}),
    )
    return review_subject(subject, now, sponsor_left=sponsor_left)


def reviewers_for(
    session: Session,
    refs: Iterable[str],
    holder_id: str,
    holder: Any,
    owners: Sequence[str],
    directory: Directory,
) -> list[str]:
    """The user ids behind reviewer references (`owners`: the package's, or for a catalog's
    review the catalog's), without anyone who has left; the holder only through `self`."""
    found: list[str] = []
    for ref in refs:
        if ref == "self":
            expanded = [holder_id]
        elif ref == "manager":
            expanded = [holder.manager_id] if holder is not None and holder.manager_id else []
        elif ref == "owners":
            expanded = reviewers_for(session, owners, holder_id, holder, owners, directory)
        elif ref.startswith("user:"):
            expanded = [ref.removeprefix("user:")]
        else:
            expanded = directory.members_of(session, ref.removeprefix("group:"))
        for user_id in expanded:
            if ref != "self" and user_id == holder_id:
                continue  # nobody reviews their own access unless the review says `self`
            if user_id and user_id not in directory.left and user_id not in found:
                found.append(user_id)
    return found


def build_items(
    session: Session,
    campaign_id: str,
    scope: ReviewScope,
    assignments: Sequence[Assignment],
    advisor: Advisor,
    *,
    now: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Rows of review_items and review_reviewers for a new campaign of `scope`'s review."""
    review = scope.review
    directory = load_directory(session, sorted({a.subject_id for a in assignments}))
    items, reviewers = [], []
    for assignment in assignments:
        holder = directory.users.get(assignment.subject_id)
        recommendation = None
        if holder is not None and review.recommendations:
            subject = subject_of(holder, directory, now)
            recommendation = advisor.recommend(scope.id, review.id, subject, now)
        item_id = new_id()
        items.append(
            {
                "id": item_id,
                "campaign_id": campaign_id,
                "assignment_id": assignment.id,
                "subject_id": assignment.subject_id,
                "package": assignment.package,
                "recommendation": str(recommendation.verdict) if recommendation else None,
                "recommendation_rule": recommendation.id if recommendation else None,
                "recommendation_reason": recommendation.reason if recommendation else None,
            }
        )
        chosen = _chosen(session, review, assignment.subject_id, holder, scope.owners, directory)
        reviewers.extend({"item_id": item_id, "user_id": user} for user in chosen)
    return items, reviewers


def reviewers_now(
    session: Session, scope: ReviewScope, items: Sequence[Any]
) -> list[dict[str, str]]:
    """review_reviewers rows for `items` as the review's reviewers (else its fallback)
    resolve today; those who have left are never among them."""
    directory = load_directory(session, sorted({item.subject_id for item in items}))
    rows = []
    for item in items:
        holder = directory.users.get(item.subject_id)
        chosen = _chosen(session, scope.review, item.subject_id, holder, scope.owners, directory)
        rows.extend({"item_id": item.id, "user_id": user} for user in chosen)
    return rows


def _chosen(
    session: Session,
    review: ReviewPolicy,
    holder_id: str,
    holder: Any,
    owners: Sequence[str],
    directory: Directory,
) -> list[str]:
    """The review's reviewers of one holder, else its fallback."""
    args = (holder_id, holder, owners, directory)
    return reviewers_for(session, review.reviewers, *args) or reviewers_for(
        session, review.fallback, *args
    )
