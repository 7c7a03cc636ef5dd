"""Who holds a claimed job: a worker's id, a heartbeat that renews its leases, dead holders."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from policyd.logs import Outage
from policyd.services.jobs import JobService

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def dead_here(holders: set[str]) -> set[str]:
    """The workers among `holders` that ran on this machine in a process that is gone."""
    host = socket.gethostname()
    dead = set()
    for holder in holders:
        parts = holder.rsplit(":", 2)  # host:pid:thread, as worker_id() makes it
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(holder)
        except PermissionError:
            pass  # alive, as another user
    return dead


@contextmanager
def heartbeat(
    sessions: Callable[[], Session],
    holder: str,
    job_ids: list[str],
    lease: timedelta,
    now: datetime,
) -> Iterator[None]:
    """Renew the lease of `job_ids` every third of a lease until the block ends, so no
    other worker takes them while this one works (time counts on from `now`)."""
    done = threading.Event()
    started = time.monotonic()
    beat = lease.total_seconds() / 3

    outage = Outage(
        log,
        f"worker {holder}: could not renew its job leases",
        f"worker {holder}: renews its job leases again",
    )

    def renew() -> None:
        while not done.wait(beat):
            until = now + timedelta(seconds=time.monotonic() - started) + lease
            try:
                with sessions() as session:
                    JobService(session).renew(job_ids, holder, until=until)
            except Exception:  # the next beat tries again; a lapsed lease is safe
                outage.failed()
            else:
                outage.succeeded()

    thread = threading.Thread(target=renew, name=f"{holder}:heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
