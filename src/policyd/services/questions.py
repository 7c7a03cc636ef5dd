"""The questions a package asks its requesters, as the active policy version declares them:
the package's own, and its rules' where the rule applies to the requester."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from policyd.domain import RequestOptions
from policyd.rules import PolicyRuntime, UnknownPackageError
from policyd.rules.decision import asked_of
from policyd.rules.question import question_view
from policyd.services.actor import Actor, Role
from policyd.services.directory import DirectoryService
from policyd.services.errors import ForbiddenError, NotFoundError


class QuestionService:
    def __init__(self, runtime: PolicyRuntime, session: Session | None = None):
        self.runtime = runtime
        self.session = session

    def list(
        self,
        package_id: str,
        language: str | None = None,
        *,
        actor: Actor | None = None,
        subject_id: str | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The package's questions, then its rules', in file order, their text in `language`
        when it has one. Each names its `rule` (None: the package's) and whether it `applies`
        to the subject (`subject_id`, else the caller): a rule's questions are asked only of
        requesters the rule applies to. `applies` is None when the caller is no directory
        user and names no subject.

        Raises:
            NotFoundError: no version is active, it has no such package, or no such subject.
            ForbiddenError: a user asking about someone else.
        """
        policy = self.runtime.active
        if policy is None:
            raise NotFoundError("no policy version is active; publish one first")
        try:
            package = policy.bundle.package(package_id)
        except UnknownPackageError:
            raise NotFoundError(f"no access package {package_id!r}", field="package") from None
        asked = None
        if any(rule.questions for rule in package.rules) and actor is not None and now:
            asked = self._asked(policy, package, actor, subject_id, now)
        views = []
        for rule_id, question in [(None, q) for q in package.questions] + [
            (rule.id, q) for rule in package.rules for q in rule.questions
        ]:
            applies = True if rule_id is None else (None if asked is None else question in asked)
            views.append({**question_view(question, language), "rule": rule_id, "applies": applies})
        return views

    def _asked(self, policy, package, actor: Actor, subject_id: str | None, now: datetime):
        if subject_id is not None and actor.role is Role.USER and subject_id != actor.principal:
            raise ForbiddenError("users see the questions asked of themselves", field="subject")
        directory = DirectoryService(self.session)
        try:
            subject = directory.resolve_subject(subject_id or actor.principal)
        except NotFoundError:
            if subject_id is not None:
                raise NotFoundError(f"no user {subject_id!r}", field="subject") from None
            return None  # an application's token: no person to ask
        return asked_of(package, policy.engine_for(package.id), subject, RequestOptions(), now)
