"""The events policyd sends messages about, and sample values of each one's template variables."""

from __future__ import annotations

from typing import Any

# event -> who gets it
EVENTS: dict[str, str] = {
    "approval_needed": "the approvers of a request's current stage",
    "approval_reminder": "the approvers of a stage still waiting, every reminder interval",
    "request_decided": "the requester, when a request is denied, timed out or cancelled by"
    " someone else",
    "access_granted": "the requester, when the access is delivered",
    "access_expiring": "the holder, at each expiry reminder",
    "access_expiring_digest": "each owner and manager of packages with access about to end",
    "access_removed": "the holder, when the access has ended",
    "review_needed": "each reviewer, when a campaign opens or items are handed to them",
    "review_reminder": "each reviewer with undecided items, at each review reminder",
    "review_opened": "each owner and manager of the packages a campaign opens on (and owner of"
    " their catalog) who is not a reviewer in it",
}

# Where each event's link points, under the public URL (docs/notifications.md#links).
LINKS = {
    "approval_needed": "requests/{id}/approve",
    "approval_reminder": "requests/{id}/approve",
    "request_decided": "requests/{id}",
    "access_granted": "requests/{id}",
    "access_expiring": "assignments/{id}",
    "access_removed": "assignments/{id}",
    "access_expiring_digest": "assignments",
    "review_needed": "reviews/campaigns/{id}",
    "review_reminder": "reviews/campaigns/{id}",
    "review_opened": "reviews/campaigns/{id}",
}
BASE = "https://access.example.org"
RECIPIENT = {"id": "ada", "name": "Ada Lovelace", "email": "ada@example.org"}
REQUEST = {
    "id": "3f0c8d5e-0000-4000-8000-000000000001",
    "package": "payroll-approver",
    "package_name": "Payroll approver",
    "subject": "alan",
    "subject_name": "Alan Turing",
    "state": "pending approval",
    "reason": "needs approval by the payroll approvers",
    "justification": "month-end close",
    "expires": "2026-03-31 17:00 UTC",
    "answers": {"ticket": "CHG-1234"},
}
ASSIGNMENT = {
    "id": "3f0c8d5e-0000-4000-8000-000000000002",
    "package": "payroll-approver",
    "package_name": "Payroll approver",
    "subject": "alan",
    "subject_name": "Alan Turing",
    "state": "active",
    "expires": "2026-03-31 17:00 UTC",
    "link": "https://access.example.org/assignments/3f0c8d5e-0000-4000-8000-000000000002",
}
GRACE = {
    **ASSIGNMENT,
    "id": "3f0c8d5e-0000-4000-8000-000000000004",
    "subject": "grace",
    "subject_name": "Grace Hopper",
    "expires": "2026-04-02 17:00 UTC",
    "link": "https://access.example.org/assignments/3f0c8d5e-0000-4000-8000-000000000004",
}
CAMPAIGN = {
    "id": "3f0c8d5e-0000-4000-8000-000000000003",
    "package": "payroll-approver",
    "package_name": "Payroll approver",
    "review": "quarterly",
    "state": "open",
    "ends": "2026-04-14 09:00 UTC",
}
OWN_VARIABLES: dict[str, dict[str, Any]] = {
    "approval_needed": {"request": REQUEST},
    "approval_reminder": {"request": REQUEST, "since": "2026-03-01 09:00 UTC"},
    "request_decided": {"request": {**REQUEST, "state": "denied", "reason": "not this quarter"}},
    "access_granted": {"request": {**REQUEST, "state": "delivered"}},
    "access_expiring": {"assignment": ASSIGNMENT},
    "access_expiring_digest": {"assignments": [ASSIGNMENT, GRACE]},
    "access_removed": {"assignment": {**ASSIGNMENT, "state": "removed"}},
    "review_needed": {"campaign": CAMPAIGN, "items": 3},
    "review_reminder": {"campaign": CAMPAIGN, "items": 1},
    "review_opened": {"campaign": CAMPAIGN, "items": 12},
}


def sample(event: str, *, links: bool = True) -> dict[str, Any]:
    """Every variable a template of `event` is given, with sample values; without `links`,
    as when no public URL is set (`link`, `base_url` and each digest entry's `link` None)."""
    own = OWN_VARIABLES[event]
    about = next(iter(own.values()))  # the request, assignment or campaign
    link = f"{BASE}/{LINKS[event].format(id=about['id'] if isinstance(about, dict) else '')}"
    if not links and "assignments" in own:
        own = {"assignments": [{**a, "link": None} for a in own["assignments"]]}
    return {
        "event": event,
        "recipient": RECIPIENT,
        "language": "en",
        "base_url": BASE if links else None,
        "link": link if links else None,
        **own,
    }
