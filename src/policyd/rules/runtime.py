"""The active policy of a process: one bundle version with its engine, swapped atomically."""

from __future__ import annotations

import threading
from datetime import datetime

from policyd.domain import Decision, RequestOptions, Subject
from policyd.rules.compiler import compile_bundle
from policyd.rules.decision import decide
from policyd.rules.engine import MEMO_SIZE, Engine, EngineClosedError
from policyd.rules.model import Bundle


class Policy:
    """A bundle, compiled and loaded into its own engine (see Engine for `memo_size`)."""

    def __init__(self, bundle: Bundle, *, memo_size: int = MEMO_SIZE):
        self.bundle = bundle
        self.engine = Engine(compile_bundle(bundle), memo_size=memo_size)

    @property
    def version(self) -> str:
        return self.bundle.version.id

    def decide(
        self,
        package_id: str,
        subject: Subject,
        request: RequestOptions | None = None,
        *,
        now: datetime,
    ) -> Decision:
        return decide(
            self.bundle, self.engine, package_id, subject, request or RequestOptions(), now
        )

    def close(self) -> None:
        self.engine.close()


class PolicyRuntime:
    """Holds the active Policy; `activate` swaps versions without a caller seeing half of one."""

    def __init__(self, bundle: Bundle | None = None, *, memo_size: int = MEMO_SIZE):
        self.memo_size = memo_size
        self._swap_lock = threading.Lock()
        self._active: Policy | None = None
        if bundle is not None:
            self._active = Policy(bundle, memo_size=memo_size)

    @property
    def active(self) -> Policy | None:
        return self._active

    def activate(self, bundle: Bundle) -> Policy:
        """Compile `bundle`, make it active, and release the version it replaces."""
        # Built before the swap: a failure leaves the old one active.
        fresh = Policy(bundle, memo_size=self.memo_size)
        with self._swap_lock:
            old, self._active = self._active, fresh
        if old is not None:
            old.close()
        return fresh

    def decide(
        self,
        package_id: str,
        subject: Subject,
        request: RequestOptions | None = None,
        *,
        now: datetime,
    ) -> Decision:
        """Decide with the active version; a swap mid-call retries on the new one."""
        while True:
            policy = self._active
            if policy is None:
                raise LookupError("no policy version is active")
            try:
                return policy.decide(package_id, subject, request, now=now)
            except EngineClosedError:
                continue

    def close(self) -> None:
        with self._swap_lock:
            old, self._active = self._active, None
        if old is not None:
            old.close()
