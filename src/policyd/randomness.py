"""Random bytes for ids, drawn from a pool filled by os.urandom a few KB at a time."""

from __future__ import annotations

import os
import threading

_POOL = 4096  # bytes per os.urandom call


class _RandomPool:
    """`take(n)` gives `n` bytes of os.urandom, one system call per `_POOL` bytes instead of
    one per id: each call releases the GIL, and on the decision path another thread would
    then take it over mid-request. A forked child (a gunicorn worker) starts a pool of its
    own, so it never hands out bytes its parent had pooled."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # one held by another thread at fork time stays held
        self._pool = b""
        self._used = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._used + n > len(self._pool):
                self._pool, self._used = os.urandom(max(_POOL, n)), 0
            start = self._used
            self._used = start + n
            return self._pool[start : start + n]


random_bytes = _RandomPool().take
