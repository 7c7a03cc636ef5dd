"""Refresh-ahead for a process's caches (subjects, API tokens): an entry used past `REFRESH_AT`
of its life is handed to one caller, who reads it again off the request's path (once its
answer is sent), so an entry in use is renewed before it lapses and no request waits on it."""

from __future__ import annotations

import threading
from collections.abc import Hashable

# Late, so that an entry in use is read about as often as when it lapsed at its ttl (each
# refresh is a database read).
REFRESH_AT = 0.75


class RefreshClaims:
    """The entries handed out for a refresh and not settled yet: each to one caller at a time.
    A cache settles a key when it puts, drops or fails to refresh the entry."""

    def __init__(self) -> None:
        self._keys: set[Hashable] = set()
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> bool:
        """Whether this caller refreshes the entry (no other caller holds it)."""
        if key in self._keys:
            return False
        with self._lock:
            if key in self._keys:
                return False
            self._keys.add(key)
        return True

    def settle(self, key: Hashable) -> None:
        with self._lock:
            self._keys.discard(key)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
