"""Who is calling: a principal with one role."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    USER = "user"  # requests for self, sees own
    APP = "app"  # decisions about anyone, requests on someone's behalf
    ADMIN = "admin"
    AUDITOR = "auditor"  # reads everything, changes nothing


@dataclass(frozen=True)
class Actor:
    principal: str
    role: Role
    trusted: bool = False  # an app whose supplied subject attributes override the directory

    @property
    def reads_all(self) -> bool:
        return self.role in (Role.ADMIN, Role.AUDITOR, Role.APP)


SYSTEM = Actor("system", Role.ADMIN, trusted=True)
