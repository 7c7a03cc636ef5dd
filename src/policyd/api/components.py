"""What `create_app` builds once for an app: its settings and shared objects, in one typed value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from policyd.api.auth import TokenCache
    from policyd.api.oidc import OidcVerifier
    from policyd.connectors.config import Connectors
    from policyd.rules import PolicyRuntime
    from policyd.services.decision_log import DecisionLog
    from policyd.services.subject_cache import SubjectCache
    from policyd.services.versions import PolicySync
    from policyd.settings import Settings
    from policyd.store import Database
    from policyd.worker import Worker


@dataclass(frozen=True, slots=True)
class Components:
    """The app's shared objects, stored on it once (`context.install`) and read through
    `context.components()`, so every use is checked against one declaration."""

    settings: Settings
    database: Database
    connectors: Connectors
    decision_log: DecisionLog
    subjects: SubjectCache
    runtime: PolicyRuntime
    # Keeps `runtime` on the active policy version; requests call its `maybe_sync`.
    sync: PolicySync
    # Delivery and the periodic tasks (`policyd serve` runs its loop in a thread).
    worker: Worker
    token_cache: TokenCache
    # The registry /metrics serves, and the request metrics the request pipeline observes.
    registry: CollectorRegistry
    metrics: dict[str, Counter | Histogram]
    # The OIDC verifier, when POLICYD_OIDC_ISSUER is set.
    oidc: OidcVerifier | None = None
    # The query parameters the OpenAPI document declares, by (path, method); filled on first
    # use (api/auth.py), once every blueprint is registered.
    declared_query: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
