"""Publishing, listing and activating immutable policy versions."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from policyd.rules import Bundle, PolicyRuntime, Problem, ProblemsError, load_texts
from policyd.rules.diff import BundleDiff, diff_bundles
from policyd.rules.packed import PackedFormatError, pack_bundle, unpack_bundle
from policyd.services.actor import Actor
from policyd.services.audit import audit
from policyd.services.errors import InvalidError, NotFoundError
from policyd.store.models import PolicyVersion, Setting
from policyd.store.prepared import PreparedRead, read_connection
from policyd.store.query import page

ACTIVE_KEY = "active_version"
_ACTIVE = PreparedRead(select(Setting.value).where(Setting.key == ACTIVE_KEY))
logger = logging.getLogger(__name__)


class VersionService:
    def __init__(self, session: Session):
        self.session = session

    def publish(
        self,
        actor: Actor,
        files: Mapping[str, str],
        *,
        message: str,
        now: datetime,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        connectors: Mapping[str, str] | None = None,
    ) -> PolicyVersion:
        """Validate `files` as one bundle, store it immutably and make it active.

        `git_dirty` records whether the files had uncommitted changes (None: not known).

        With `connectors` (configured instance name -> type), a resource naming any other
        instance, or one its connector type cannot work with, is an error too.

        Raises:
            InvalidError: with every `file:line: message` problem; nothing is stored.
        """
        version = self.store_and_activate(
            actor,
            files,
            message=message,
            now=now,
            git_commit=git_commit,
            git_dirty=git_dirty,
            connectors=connectors,
        )
        self.session.commit()
        return version

    def store_and_activate(
        self,
        actor: Actor,
        files: Mapping[str, str],
        *,
        message: str,
        now: datetime,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        connectors: Mapping[str, str] | None = None,
    ) -> PolicyVersion:
        """`publish` in the caller's transaction (a service that commits it with its own
        change); see `publish`."""
        try:
            bundle = load_texts(dict(files))
            if connectors is not None:
                check_connectors(bundle, connectors)
        except ProblemsError as err:
            raise InvalidError(
                f"the bundle has {len(err.problems)} error(s); the active version is unchanged",
                field="files",
                errors=[str(p) for p in err.problems],
            ) from None
        version = self.session.get(PolicyVersion, bundle.version.id)
        if version is None:
            version = PolicyVersion(
                id=bundle.version.id,
                content_hash=bundle.version.content_hash,
                files=dict(files),
                git_commit=git_commit,
                git_dirty=git_dirty,
                author=actor.principal,
                message=message,
                created_at=now,
                packages=sorted(bundle.packages),
                packed=pack_bundle(bundle),
            )
            self.session.add(version)
            audit(
                self.session,
                actor,
                "version.published",
                ("policy_version", version.id),
                now=now,
                after={
                    "message": message,
                    "git_commit": git_commit,
                    "git_dirty": git_dirty,
                    "packages": version.packages,
                },
                version=version.id,
            )
        self._activate(actor, version, now)
        return version

    def activate(self, actor: Actor, version_id: str, *, now: datetime) -> PolicyVersion:
        """Make a stored version active again.

        Raises:
            InvalidError: it does not load with this policyd (it was published under older
                checks); nothing changes. A version packed in this policyd's format passed
                these checks when it was published, so it is not validated again.
        """
        version = self.get(version_id)
        try:
            self.bundle(version_id)  # its packed form, if this policyd's checks made it
        except ProblemsError as err:
            raise InvalidError(
                f"version {version_id} does not load with this policyd; publish a fixed one",
                field="id",
                errors=[str(p) for p in err.problems],
            ) from None
        self._activate(actor, version, now)
        self.session.commit()
        return version

    def _activate(self, actor: Actor, version: PolicyVersion, now: datetime) -> None:
        setting = self.session.get(Setting, ACTIVE_KEY, with_for_update=True)
        before = setting.value if setting else None
        if before == version.id:
            return
        if setting is None:
            self.session.add(Setting(key=ACTIVE_KEY, value=version.id, updated_at=now))
        else:
            setting.value, setting.updated_at = version.id, now
        audit(
            self.session,
            actor,
            "version.activated",
            ("policy_version", version.id),
            now=now,
            before={"active": before},
            after={"active": version.id},
            version=version.id,
        )

    def get(self, version_id: str) -> PolicyVersion:
        version = self.session.get(PolicyVersion, version_id)
        if version is None:
            raise NotFoundError(f"no policy version {version_id!r}", field="id")
        return version

    def active_id(self) -> str | None:
        setting = self.session.get(Setting, ACTIVE_KEY)
        return setting.value if setting else None

    def polled_active_id(self) -> str | None:
        """`active_id` as committed, read on the driver's cursor outside the session's
        transaction: what every serving process polls every few seconds, in a request
        (store/prepared.py)."""
        with read_connection(self.session) as connection:
            row = _ACTIVE.first(connection, {})
        return row[0] if row else None

    def list(self, *, offset: int = 0, limit: int = 50) -> tuple[list[PolicyVersion], int]:
        query = select(PolicyVersion).order_by(PolicyVersion.created_at.desc(), PolicyVersion.id)
        return page(self.session, query, offset, limit)

    def bundle(self, version_id: str) -> Bundle:
        """The validated bundle of a stored version, from the packed form stored with it
        (validated when it was published; its packages decode when first read). A version
        without one in this policyd's format is parsed and validated from its files.

        Raises:
            NotFoundError: no such version.
            ProblemsError: its files do not load with this policyd.
        """
        row = self.session.execute(
            select(PolicyVersion.content_hash, PolicyVersion.packed).where(
                PolicyVersion.id == version_id
            )
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"no policy version {version_id!r}", field="id")
        content_hash, packed = row
        if packed:
            try:
                bundle = unpack_bundle(packed)
            except PackedFormatError:
                pass
            else:
                if bundle.version.content_hash == content_hash:
                    return bundle
        return load_texts(self.get(version_id).files)

    def diff(self, old_id: str, new_id: str) -> BundleDiff:
        """What changed from version `old_id` to version `new_id`, package by package, rule by
        rule, field by field (formatting, key order and comments never count).

        Raises:
            NotFoundError: no such version; the field names the side (`old` or `new`).
            InvalidError: a stored version does not load with this policyd.
        """
        bundles = []
        for side, version_id in (("old", old_id), ("new", new_id)):
            version = self.session.get(PolicyVersion, version_id)
            if version is None:
                raise NotFoundError(f"no policy version {version_id!r}", field=side)
            try:
                bundles.append(self.bundle(version_id))
            except ProblemsError as err:
                raise InvalidError(
                    f"version {version_id} does not load with this policyd",
                    field=side,
                    errors=[str(p) for p in err.problems],
                ) from None
        return diff_bundles(*bundles, old_label=old_id, new_label=new_id)


def check_connectors(bundle: Bundle, connectors: Mapping[str, str]) -> None:
    """Every resource names a configured connector instance, in a form its type accepts.

    Args:
        connectors: instance name -> connector type, as the connectors file configures them.

    Raises:
        ProblemsError: one problem per bad resource, at its line in the package's file.
    """
    from policyd.connectors.registry import resource_problem

    problems = []
    for package in bundle.packages.values():
        for index, resource in enumerate(package.resources):
            path = f"package.resources[{index}]"
            if resource.connector not in connectors:
                message = (
                    f"unknown connector instance {resource.connector!r}; configured: "
                    f"{', '.join(sorted(connectors))}"
                )
                problems.append(Problem(package.file, resource.line, message, f"{path}.connector"))
                continue
            problem = resource_problem(
                connectors[resource.connector], resource.resource, resource.role
            )
            if problem is not None:
                message = f"{resource.connector!r}: {problem}"
                problems.append(Problem(package.file, resource.line, message, f"{path}.resource"))
    if problems:
        raise ProblemsError(problems)


class PolicySync:
    """Keeps a process's PolicyRuntime on the version the database says is active.

    Every process polls at most once per `interval` seconds (one primary-key read), so a
    publication reaches all processes within that interval without a restart. With
    `background`, `maybe_sync` builds a new version in a thread of its own while the process
    goes on deciding with the version it has; the swap happens once the new one is ready.
    """

    def __init__(
        self,
        runtime: PolicyRuntime,
        sessions: Callable[[], Session],
        interval: float = 2.0,
        *,
        background: bool = False,
    ):
        self.runtime = runtime
        self.sessions = sessions
        self.interval = interval
        self.background = background
        self._checked = 0.0
        self._lock = threading.Lock()  # guards _building
        self._load_lock = threading.Lock()  # one build at a time
        self._building: threading.Thread | None = None
        self._unloadable: str | None = None  # the active id that failed to load, tried once

    @property
    def due(self) -> bool:
        """Whether `maybe_sync` would read the database now."""
        return time.monotonic() - self._checked >= self.interval

    def maybe_sync(self) -> None:
        if self.due:
            self.poll()

    def claim(self) -> bool:
        """Whether a poll is due, taken by this caller, who then runs `poll` (the decision
        route: once its answer is sent). The interval restarts now, so other callers find
        none due meanwhile."""
        if not self.due:
            return False
        with self._lock:
            if not self.due:
                return False
            self._checked = time.monotonic()
        return True

    def poll(self) -> None:
        """Follow the active version now (building a new one in the background with
        `background`)."""
        self.sync(wait=not self.background)

    def sync(self, *, wait: bool = True) -> str | None:
        """Follow the active version; returns its id.

        Args:
            wait: build a new version before returning; otherwise start building it in a
                background thread (unless one is under way) and return at once.
        """
        self._checked = time.monotonic()
        with self.sessions() as session:
            active = VersionService(session).polled_active_id()
        if not self._wanted(active):
            return active
        if wait:
            self._load(active)
            return active
        with self._lock:
            if self._building is None:
                self._building = threading.Thread(
                    target=self._load_in_background,
                    args=(active,),
                    name="policyd-version-build",
                    daemon=True,
                )
                self._building.start()
        return active

    def join(self, timeout: float | None = None) -> None:
        """Wait for a background build under way, if any, to finish."""
        with self._lock:
            building = self._building
        if building is not None:
            building.join(timeout)

    def _wanted(self, active: str | None) -> bool:
        current = self.runtime.active.version if self.runtime.active else None
        return bool(active) and active not in (current, self._unloadable)

    def _load_in_background(self, active: str) -> None:
        try:
            self._load(active)
        except Exception:  # a thread has no caller to tell: log it, try again next interval
            logger.exception("building policy version %s failed", active)
        finally:
            with self._lock:
                self._building = None

    def after_fork(self) -> None:
        """In a process forked from this one (a gunicorn worker of a preloaded app): the
        locks anew (a thread of the parent may have held one) and no build under way."""
        self._lock, self._load_lock = threading.Lock(), threading.Lock()
        self._building = None

    def _load(self, active: str) -> None:
        with self._load_lock:
            if not self._wanted(active):
                return  # another caller built it meanwhile
            started = time.perf_counter()
            current = self.runtime.active.version if self.runtime.active else None
            with self.sessions() as session:
                try:
                    bundle = VersionService(session).bundle(active)
                except ProblemsError as err:
                    # Published under older checks: keep deciding with what is loaded.
                    self._unloadable = active
                    logger.error(
                        "policy version %s does not load with this policyd; still using "
                        "%s; publish a fixed version:\n%s",
                        active,
                        current or "none",
                        err,
                    )
                    return
            self.runtime.activate(bundle)
            took = time.perf_counter() - started
            # Said once per process that loads it: with a preloaded app, once per host.
            logger.info(
                "policy version %s loaded in %.2f s by process %d", active, took, os.getpid()
            )
