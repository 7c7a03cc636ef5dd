"""Delivery targets: the person behind a grant, revoke or event job, from the directory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.connectors.base import Target
from policyd.domain import UserType
from policyd.store.models import User
from policyd.store.query import among


def delivery_targets(session: Session, jobs: Iterable[Any]) -> dict[str, Target]:
    """The Target of each job (by job id) with its person's directory details; a person
    not in the directory is a bare Target of their id.

    Args:
        jobs: claimed jobs (rows with id, subject_id, resource and role).
    """
    jobs = list(jobs)
    if not jobs:
        return {}
    users = {
        row.id: row
        for row in session.execute(
            select(User.id, User.email, User.type, User.display_name).where(
                among(session, User.id, {job.subject_id for job in jobs})
            )
        )
    }
    targets = {}
    for job in jobs:
        user = users.get(job.subject_id)
        if user is None:
            targets[job.id] = Target(job.subject_id, job.resource, job.role, operation_id=job.id)
            continue
        targets[job.id] = Target(
            user_id=user.id,
            resource=job.resource,
            role=job.role,
            email=user.email,
            user_type=UserType(user.type),
            display_name=user.display_name,
            operation_id=job.id,
        )
    return targets
