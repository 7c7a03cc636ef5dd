"""Approver references resolved through the directory: one resolver for decisions and requests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.domain import Decision, Subject
from policyd.rules.model import AccessPackage
from policyd.services.directory import DirectoryService
from policyd.store.models import Membership, User

ACTIVE_USER = "active"


def approver_refs(
    refs: Iterable[str],
    subject: Subject,
    package: AccessPackage,
    session: Session | Callable[[], Session],
) -> list[str]:
    """`refs` with `manager`, `owners` and `sponsors` replaced by the `user:` and `group:`
    references they stand for, in order and without repeats.

    The directory is read only for `sponsors` (the subject's connected organisation), so a
    decision without them opens no session.
    """
    found: list[str] = []
    for ref in refs:
        if ref == "manager":
            expanded = [f"user:{subject.manager}"] if subject.manager else []
        elif ref == "owners":
            expanded = approver_refs(
                [r for r in package.owners if r != "owners"], subject, package, session
            )
        elif ref == "sponsors":
            org = DirectoryService(session).organization_for(subject)
            sponsors = [*org.internal_sponsors, *org.external_sponsors] if org else []
            expanded = [f"user:{user}" for user in sponsors]
        else:
            expanded = [ref]
        found.extend(item for item in expanded if item not in found)
    return found


def approver_ids(
    refs: Iterable[str], subject: Subject, package: AccessPackage, session: Session
) -> list[str]:
    """The user ids behind approver references: groups expanded to their members. Never the
    subject, and never someone who has left (deleted or disabled)."""
    ids: list[str] = []
    for ref in approver_refs(refs, subject, package, session):
        if ref.startswith("user:"):
            members = [ref.removeprefix("user:")]
        else:
            group = ref.removeprefix("group:")
            members = list(
                session.scalars(
                    select(Membership.user_id)
                    .where(Membership.group_id == group)
                    .order_by(Membership.user_id)
                )
            )
        ids.extend(i for i in members if i and i != subject.id and i not in ids)
    return present(session, ids)


def present(session: Session, user_ids: list[str]) -> list[str]:
    """`user_ids` without those who have left; ids the directory does not know stay (an
    approver may be named before they are imported)."""
    if not user_ids:
        return []
    left = set(
        session.scalars(select(User.id).where(User.id.in_(user_ids), User.state != ACTIVE_USER))
    )
    return [user for user in user_ids if user not in left]


def with_resolved_approvers(
    decision: Decision,
    subject: Subject,
    package: AccessPackage,
    session: Session | Callable[[], Session],
) -> Decision:
    """The decision with each stage's `resolved` references as the request will resolve
    them (sponsors included)."""
    if not decision.stages:
        return decision
    resolved = [
        tuple(approver_refs(stage.approvers, subject, package, session))
        for stage in decision.stages
    ]
    # Unless a stage names sponsors (or owners naming the manager or sponsors), the rules
    # resolved it alike already and the decision stands as it is: `replace` would run the
    # frozen dataclass's __init__, one field at a time, on every decision.
    if all(refs == stage.resolved for refs, stage in zip(resolved, decision.stages, strict=True)):
        return decision
    stages = tuple(
        stage if refs == stage.resolved else replace(stage, resolved=refs)
        for refs, stage in zip(resolved, decision.stages, strict=True)
    )
    return replace(decision, stages=stages)
