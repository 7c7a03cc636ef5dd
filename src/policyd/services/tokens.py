"""Opaque API tokens: shown once, stored as sha256, revocable, with optional expiry."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from policyd.services.actor import Actor, Role
from policyd.services.audit import audit
from policyd.services.errors import InvalidError, NotFoundError
from policyd.store.models import ApiToken
from policyd.store.prepared import PreparedRead, read_connection
from policyd.store.query import page

PREFIX = "pd_"


class LiveToken(NamedTuple):
    """What a request needs of a live API token."""

    id: str
    principal: str
    role: str
    expires_at: datetime | None


_BY_HASH = PreparedRead(
    select(
        ApiToken.id, ApiToken.principal, ApiToken.role, ApiToken.expires_at, ApiToken.revoked_at
    ).where(ApiToken.token_hash == bindparam("hash"))
)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_view(token: ApiToken) -> dict:
    return {
        "principal": token.principal,
        "role": token.role,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def token_state(token: ApiToken, now: datetime) -> str:
    """`active`, `expired` or `revoked` at `now`."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


class TokenService:
    def __init__(self, session: Session):
        self.session = session

    def create(
        self,
        actor: Actor,
        principal: str,
        role: str,
        *,
        now: datetime,
        expires_in: timedelta | None = None,
        description: str | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token; the plain text is returned once and never stored."""
        try:
            Role(role)
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidError(
                f"unknown role {role!r}; use one of: {roles}", field="role"
            ) from None
        if not principal:
            raise InvalidError("a principal is required", field="principal")
        plain = PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(
            principal=principal,
            role=role,
            token_hash=token_hash(plain),
            description=description,
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        self.session.add(token)
        self.session.flush()
        audit(
            self.session,
            actor,
            "token.created",
            ("token", token.id),
            now=now,
            after=token_view(token),
        )
        self.session.commit()
        return token, plain

    def authenticate(self, plain: str, *, now: datetime) -> LiveToken | None:
        """The live token behind `plain`, or None (unknown, revoked or expired), as committed:
        read on the driver's cursor outside the session's transaction, because every serving
        process checks its callers' tokens again every few seconds, in a request
        (store/prepared.py)."""
        with read_connection(self.session) as connection:
            row = _BY_HASH.first(connection, {"hash": token_hash(plain)})
        if row is None:
            return None
        token = LiveToken(*row[:4])
        revoked_at = row[4]
        if revoked_at is not None:
            return None
        if token.expires_at is not None and token.expires_at <= now:
            return None
        return token

    def revoke(self, actor: Actor, token_id: str, *, now: datetime) -> ApiToken:
        token = self.session.get(ApiToken, token_id)
        if token is None:
            raise NotFoundError(f"no token {token_id!r}", field="id")
        if token.revoked_at is None:
            before = token_view(token)
            token.revoked_at = now
            audit(
                self.session,
                actor,
                "token.revoked",
                ("token", token.id),
                now=now,
                before=before,
                after=token_view(token),
            )
            self.session.commit()
        return token

    def list(self, *, offset: int = 0, limit: int = 100) -> tuple[list[ApiToken], int]:
        return page(self.session, select(ApiToken).order_by(ApiToken.created_at), offset, limit)
