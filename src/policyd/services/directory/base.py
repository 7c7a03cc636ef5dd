"""What every part of the directory service shares: its session and the check on ids."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from policyd.services.errors import InvalidError

MAX_ID = 200  # the id columns' length


def check_id(value: str, field: str = "id") -> str:
    """Ids are 1 to 200 characters of text every backend stores alike (SQLite would take a
    longer one, or a NUL character PostgreSQL refuses).

    Raises:
        InvalidError: naming `field`.
    """
    if not value or len(value) > MAX_ID:
        raise InvalidError(f"an id has 1 to {MAX_ID} characters", field=field)
    if "\x00" in value:
        raise InvalidError("an id may not contain the NUL character", field=field)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise InvalidError("an id must be valid Unicode text", field=field) from None
    return value


class DirectoryPart:
    """The session a part of DirectoryService works in."""

    def __init__(self, session: Session | Callable[[], Session]):
        """`session` may be a function that opens one: a decision on a cached subject needs
        none, and opening and closing one costs about 20 µs."""
        self._session = session

    @property
    def session(self) -> Session:
        if not isinstance(self._session, Session):
            self._session = self._session()
        return self._session
