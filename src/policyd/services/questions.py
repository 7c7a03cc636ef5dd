"""The questions a package asks its requesters, as the active policy version declares them."""

from __future__ import annotations

from typing import Any

from policyd.rules import PolicyRuntime, UnknownPackageError
from policyd.rules.question import question_view
from policyd.services.errors import NotFoundError


class QuestionService:
    def __init__(self, runtime: PolicyRuntime):
        self.runtime = runtime

    def list(self, package_id: str, language: str | None = None) -> list[dict[str, Any]]:
        """The package's questions in order, their text in `language` when it has one.

        Raises:
            NotFoundError: no version is active, or it has no such package.
        """
        policy = self.runtime.active
        if policy is None:
            raise NotFoundError("no policy version is active; publish one first")
        try:
            package = policy.bundle.package(package_id)
        except UnknownPackageError:
            raise NotFoundError(f"no access package {package_id!r}", field="package") from None
        return [question_view(question, language) for question in package.questions]
