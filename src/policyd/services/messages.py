"""What a notification says: each event's template variables, read when it is sent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from policyd.notify.sample import EVENTS, LINKS, sample
from policyd.notify.template import Rendered, Templates, shipped_templates
from policyd.rules.review import CATALOG_SCOPE
from policyd.store.models import AccessRequest, Assignment, ReviewCampaign, ReviewItem, User
from policyd.store.models import ReviewReviewer as Reviewer
from policyd.store.query import among

DIGEST_LIMIT = 500  # assignments listed in one digest; the link lists them all
GONE = "?"


@dataclass(frozen=True)
class Message:
    """A rendered notification for one person."""

    address: str
    rendered: Rendered


@dataclass(frozen=True)
class Messages:
    """Renders notifications: the templates, the public URL links start with, and the
    runtime whose active version names the packages."""

    templates: Templates = field(default_factory=shipped_templates)
    public_url: str | None = None
    runtime: Any = None  # rules.PolicyRuntime

    def link(self, path: str) -> str | None:
        return f"{self.public_url.rstrip('/')}/{path}" if self.public_url else None

    def package_name(self, package_id: str) -> str:
        active = self.runtime.active if self.runtime is not None else None
        packages: Mapping[str, Any] = active.bundle.packages if active else {}
        package = packages.get(package_id)
        if package is None and active and package_id.startswith(CATALOG_SCOPE):  # a catalog review
            package = active.bundle.catalogs.get(package_id.removeprefix(CATALOG_SCOPE))
        return package.display_name if package is not None else package_id

    def render(
        self,
        session: Session,
        kind: str,
        object_id: str,
        recipient: User | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """The message of `kind` about `object_id` for `recipient`, from the object's
        state now; an object that is gone renders with '?' for its values."""
        values: dict[str, Any] = {
            "event": kind,
            "recipient": _person(recipient),
            "language": self.templates.language,  # the chosen template's, when rendered
            "base_url": self.public_url.rstrip("/") if self.public_url else None,
            "link": self.link(LINKS[kind].format(id=object_id)),
        }
        values.update(self._variables(session, kind, object_id, recipient, payload or {}))
        return self.templates.render(kind, values, _language(recipient))

    def _variables(
        self,
        session: Session,
        kind: str,
        object_id: str,
        recipient: User | None,
        payload: Mapping[str, Any],
    ) -> dict[str, Any]:
        if kind == "access_expiring_digest":
            return {"assignments": self._assignments(session, payload.get("assignments", ()))}
        if kind in ("review_needed", "review_reminder"):
            user = recipient.id if recipient is not None else ""
            return {
                "campaign": self._campaign(session, object_id),
                "items": _open(session, object_id, user),
            }
        if kind == "review_opened":  # counted in the owner's packages when the campaign opened
            return {
                "campaign": self._campaign(session, object_id),
                "items": payload.get("items", 0),
            }
        if kind in ("access_expiring", "access_removed"):
            assignment = session.get(Assignment, object_id)
            return {"assignment": self._assignment(session, assignment, object_id)}
        values = {"request": self._request(session, object_id)}
        if kind == "approval_reminder":
            values["since"] = _stage_start(session, object_id)
        return values

    def _request(self, session: Session, object_id: str) -> dict[str, Any]:
        request = session.get(AccessRequest, object_id)
        if request is None:
            return _gone(object_id, "reason", "justification", "answers")
        return {
            **self._held(session, object_id, request.package, request.subject_id),
            "state": request.state.replace("_", " "),
            "reason": request.reason,
            "justification": request.justification or "",
            "expires": _when(request.expires_at),
            "answers": dict(request.answers or {}),
        }

    def _assignment(self, session: Session, row: Any, object_id: str) -> dict[str, Any]:
        if row is None:
            return {**_gone(object_id), "link": self.link(f"assignments/{object_id}")}
        return {
            **self._held(session, row.id, row.package, row.subject_id),
            "state": row.state,
            "expires": _when(row.expires_at),
            "link": self.link(f"assignments/{row.id}"),
        }

    def _assignments(self, session: Session, ids: Sequence[str]) -> list[dict[str, Any]]:
        rows = session.scalars(
            select(Assignment)
            .where(among(session, Assignment.id, list(ids)[:DIGEST_LIMIT]))
            .order_by(Assignment.expires_at, Assignment.package, Assignment.subject_id)
        ).all()
        # The holders in one query: held here, session.get finds them without another.
        holders = session.scalars(
            select(User).where(among(session, User.id, {row.subject_id for row in rows}))
        ).all()
        listed = [self._assignment(session, row, row.id) for row in rows]
        del holders
        return listed

    def _campaign(self, session: Session, object_id: str) -> dict[str, Any]:
        campaign = session.get(ReviewCampaign, object_id)
        if campaign is None:
            return _gone(object_id, "review", "ends")
        return {
            "id": campaign.id,
            "package": campaign.package,
            "package_name": self.package_name(campaign.package),
            "review": campaign.review,
            "state": campaign.state,
            "ends": _when(campaign.ends_at),
        }

    def _held(self, session: Session, object_id: str, package: str, subject: str) -> dict[str, Any]:
        user = session.get(User, subject)
        return {
            "id": object_id,
            "package": package,
            "package_name": self.package_name(package),
            "subject": subject,
            "subject_name": (user.display_name if user is not None else None) or subject,
        }


def events() -> dict[str, str]:
    """Every event policyd sends a message about, and who gets it."""
    return dict(EVENTS)


def preview(templates: Templates, event: str, language: str | None = None) -> Rendered:
    """What `templates` make of `event`'s sample values (`policyd notifications render`)."""
    return templates.render(event, sample(event), language)


def _stage_start(session: Session, request_id: str) -> str:
    """When the request's current stage began to wait."""
    request = session.get(AccessRequest, request_id)
    if request is None or not request.stage:
        return "-"
    started = request.stages[request.stage - 1].get("started_at")
    return _when(datetime.fromisoformat(started)) if started else "-"


def _open(session: Session, campaign_id: str, user_id: str) -> int:
    """How many undecided items of the campaign `user_id` may decide."""
    return (
        session.scalar(
            select(func.count())
            .select_from(ReviewItem)
            .join(Reviewer, Reviewer.item_id == ReviewItem.id)
            .where(
                ReviewItem.campaign_id == campaign_id,
                ReviewItem.decision.is_(None),
                Reviewer.user_id == user_id,
            )
        )
        or 0
    )


def _person(user: User | None) -> dict[str, Any]:
    if user is None:
        return {"id": GONE, "name": GONE, "email": ""}
    return {"id": user.id, "name": user.display_name or user.id, "email": user.email or ""}


def _language(user: User | None) -> str | None:
    """The recipient's language: the directory attribute `language` (e.g. `de`, `fr-CA`)."""
    language = (user.attributes or {}).get("language") if user is not None else None
    return language if isinstance(language, str) and language.strip() else None


def _gone(object_id: str, *extra: str) -> dict[str, Any]:
    values: dict[str, Any] = {
        key: GONE for key in ("package", "package_name", "subject", "subject_name", "state")
    }
    values.update({key: GONE for key in extra}, id=object_id, expires="-")
    if "answers" in extra:
        values["answers"] = {}
    return values


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "never"
