"""Start-up on a shared database: workers racing to publish the initial policies."""

from __future__ import annotations

import threading

from policyd.api import create_app
from policyd.api.context import components
from tests.conftest import POLICIES, empty_tables


def test_workers_starting_together_publish_the_policies_once(database_url, clock):
    """Several app processes starting at once on an empty database all come up ready."""
    apps = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def start():
        barrier.wait()
        try:
            apps.append(
                create_app(
                    {
                        "POLICYD_DATABASE_URL": database_url,
                        "POLICYD_POLICIES": str(POLICIES),
                        "POLICYD_CLOCK": clock,
                        "POLICYD_AUTO_UPGRADE": True,
                    }
                )
            )
        except BaseException as err:  # reported below with the others
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        versions = {app.test_client().get("/readyz").json["version"] for app in apps}
        assert len(versions) == 1
    finally:
        for app in apps:
            components(app).runtime.close()
        if apps:
            empty_tables(components(apps[0]).database)  # the next test publishes its own
        for app in apps:
            components(app).database.dispose()
