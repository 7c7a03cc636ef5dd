"""The lifecycle worker: outbox jobs through a dispatch table, and the periodic tasks."""

from __future__ import annotations

# Importing a module that declares periodic tasks registers them (policyd.periodic.TASKS):
# these are the domains with tasks. A task added to one of them needs nothing else; a new
# module with tasks is imported here once.
import policyd.services.approval_reminders
import policyd.services.assignments
import policyd.services.auto_assignment
import policyd.services.decision_log
import policyd.services.external_users
import policyd.services.notifications
import policyd.services.publications
import policyd.services.requests
import policyd.services.reviews
import policyd.worker.tasks  # noqa: F401
from policyd.worker.dispatch import DELIVERY, event_payload
from policyd.worker.lease import dead_here, worker_id
from policyd.worker.runner import EXPIRY_BATCH, WORKER_ACTOR, Outcome, Worker

WORKER = WORKER_ACTOR  # the actor of the worker's changes (audited as "worker")

__all__ = [
    "DELIVERY",
    "EXPIRY_BATCH",
    "WORKER",
    "Outcome",
    "Worker",
    "dead_here",
    "event_payload",
    "worker_id",
]
