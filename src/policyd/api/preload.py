"""gunicorn settings that load policyd's app once and fork the workers from it:
`gunicorn -c python:policyd.api.preload -w 4 'policyd.api:create_app()'`.

The master builds the app, and with it the active policy version (parsed, checked and compiled
once, not once per worker); each worker then starts from a copy of it, sharing its memory page
by page until written. What must not be shared is made anew in each worker (`after_fork`):
database connections and background threads. Other gunicorn settings (workers, bind, timeout)
come from the command line or the environment as usual.
"""

from __future__ import annotations

from typing import Any

from policyd.api import after_fork
from policyd.api.context import KEY

preload_app = True


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn calls this in each new worker, right after the fork."""
    app = getattr(worker.app, "callable", None)  # the app the master loaded
    if app is not None and KEY in getattr(app, "extensions", {}):
        after_fork(app)
