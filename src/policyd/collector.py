"""Pausing Python's cyclic garbage collector around bulk work that makes many objects at once."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cyclic collection inside the block; reference counting still frees.

    For work that makes hundreds of thousands of objects in one go — a bundle being loaded
    (kept), a page of reconcile rows (dropped at its end) — where every collection of the
    oldest generation walks the whole process again and finds nothing to free: measured, a
    third of loading 10,000 packages and ~100 ms per reconcile page. The previous state is
    restored, so nesting is safe.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
