"""The active policy of a process: one bundle version, compiled package by package on first
use, with at most a bounded number of packages resident in the engine; swapped atomically."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

from policyd.domain import Decision, RequestOptions, Subject
from policyd.rules.compiler import compile_bundle
from policyd.rules.decision import decide
from policyd.rules.engine import MEMO_SIZE, Engine, EngineClosedError
from policyd.rules.model import Bundle

RESIDENT = 250  # packages compiled into the engine at once, per version


class Policy:
    """A bundle whose packages are compiled into the engine when first decided.

    Each package gets an Engine of its own (see Engine for `memo_size`, which therefore counts
    per resident package). Past `resident` packages the least recently used one is released;
    it is compiled again when next asked for, so a bundle of any size holds bounded memory.
    """

    def __init__(self, bundle: Bundle, *, memo_size: int = MEMO_SIZE, resident: int = RESIDENT):
        self.bundle = bundle
        self.memo_size = memo_size
        self.resident = max(resident, 1)
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def version(self) -> str:
        return self.bundle.version.id

    @property
    def closed(self) -> bool:
        return self._closed

    def engine_for(self, package_id: str) -> Engine:
        """The engine holding `package_id`, compiled now if it is not resident.

        Raises:
            UnknownPackageError: the bundle has no such package.
            EngineClosedError: this version was closed by a swap.
        """
        with self._lock:
            if self._closed:
                raise EngineClosedError(self.version)
            engine = self._engines.get(package_id)
            if engine is not None:
                self._engines.move_to_end(package_id)
                return engine
        package = self.bundle.package(package_id)
        # Compiled outside the lock: one package takes a fraction of a millisecond, and the
        # packages already resident keep answering meanwhile.
        alone = Bundle(packages={package_id: package}, version=self.bundle.version)
        fresh = Engine(compile_bundle(alone), memo_size=self.memo_size)
        released: list[Engine] = [fresh]
        with self._lock:
            engine = self._engines.get(package_id)
            if not self._closed and engine is None:
                engine, released = fresh, []
                self._engines[package_id] = fresh
                while len(self._engines) > self.resident:
                    released.append(self._engines.popitem(last=False)[1])
            closed = self._closed
        for old in released:
            old.close()
        if closed:
            raise EngineClosedError(self.version)
        assert engine is not None
        return engine

    def warm(self, package_ids: Iterable[str]) -> None:
        """Compile these packages now (unknown ids are skipped), so no decision waits for them."""
        for package_id in package_ids:
            if package_id in self.bundle.packages:
                self.engine_for(package_id)
                # Hand the interpreter lock to a deciding thread between packages, rather
                # than at the interpreter's switch interval (milliseconds): the build runs
                # beside requests and must not add to their latency.
                time.sleep(0)

    def resident_ids(self) -> list[str]:
        """The compiled packages, least recently used first."""
        with self._lock:
            return list(self._engines)

    def decide(
        self,
        package_id: str,
        subject: Subject,
        request: RequestOptions | None = None,
        *,
        now: datetime,
    ) -> Decision:
        while True:
            engine = self.engine_for(package_id)
            try:
                return decide(
                    self.bundle, engine, package_id, subject, request or RequestOptions(), now
                )
            except EngineClosedError:
                if self._closed:
                    raise
                # Released to make room for another package meanwhile: compile it again.

    def close(self) -> None:
        with self._lock:
            self._closed = True
            engines = list(self._engines.values())
            self._engines.clear()
        for engine in engines:
            engine.close()


class PolicyRuntime:
    """Holds the active Policy; `activate` swaps versions without a caller seeing half of one."""

    def __init__(
        self,
        bundle: Bundle | None = None,
        *,
        memo_size: int = MEMO_SIZE,
        resident: int = RESIDENT,
    ):
        self.memo_size = memo_size
        self.resident = resident
        self._swap_lock = threading.Lock()
        self._active: Policy | None = None
        if bundle is not None:
            self._active = Policy(bundle, memo_size=memo_size, resident=resident)

    @property
    def active(self) -> Policy | None:
        return self._active

    def activate(self, bundle: Bundle) -> Policy:
        """Build `bundle`, make it active, and release the version it replaces.

        The packages the old version holds compiled are compiled for the new one first, while
        every decision is still answered by the old version; only then is the reference
        swapped, so no decision waits for a compile.
        """
        fresh = Policy(bundle, memo_size=self.memo_size, resident=self.resident)
        current = self._active
        if current is not None:
            fresh.warm(current.resident_ids())  # a failure leaves the old one active
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
