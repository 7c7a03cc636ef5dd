"""A real SCIM server (scim2-server, in memory) on loopback, seeded through its own SCIM API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

TOKEN = "test-token"  # a throwaway token for a loopback test server
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


class QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without its per-request access log line (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Outage:
    """A WSGI middleware that answers 503 while `down` is set (fault injection for 5xx)."""

    app: Any
    down: bool = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not self.down:
            return self.app(environ, start_response)
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "503"}
        start_response("503 Service Unavailable", [("Content-Type", "application/scim+json")])
        return [json.dumps(body).encode()]


@dataclass
class ScimServer:
    """A running server, its base URL, and helpers that seed it over SCIM."""

    url: str
    token: str | None
    outage: Outage
    _server: BaseWSGIServer
    _thread: threading.Thread
    _client: httpx.Client
    _stopped: bool = field(default=False)

    def create_user(self, user_name: str, *emails: str) -> str:
        """POST a User and return its SCIM id."""
        body: dict[str, Any] = {"schemas": [USER], "userName": user_name}
        if emails:
            body["emails"] = [{"value": e, "primary": i == 0} for i, e in enumerate(emails)]
        return self._create("/Users", body)

    def create_group(self, display_name: str, *members: dict[str, str]) -> str:
        """POST a Group with the given `members` entries and return its SCIM id."""
        body: dict[str, Any] = {"schemas": [GROUP], "displayName": display_name}
        if members:
            body["members"] = list(members)
        return self._create("/Groups", body)

    def member_values(self, group_id: str) -> list[str]:
        """The raw `members[].value` list of a group, duplicates included."""
        response = self._client.get(f"/Groups/{group_id}", params={"attributes": "members"})
        response.raise_for_status()
        return [m["value"] for m in response.json().get("members", [])]

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._client.close()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _create(self, endpoint: str, body: dict[str, Any]) -> str:
        response = self._client.post(endpoint, json=body)
        response.raise_for_status()
        return str(response.json()["id"])


def start_scim_server(token: str | None = TOKEN) -> ScimServer:
    """Serve an empty in-memory SCIM server on 127.0.0.1 at a free port, in a thread.

    With `token`, every endpoint but /ServiceProviderConfig needs `Authorization: Bearer
    <token>` (scim2-server's own BearerTokenApplication); without, it accepts anyone.
    """
    config = load_default_service_provider_config()
    if token is not None:
        config.authentication_schemes = [BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    app = BearerTokenApplication(
        InMemoryStorage(), provider, bearer_tokens=[token] if token is not None else []
    )
    outage = Outage(app)
    server = make_server("127.0.0.1", 0, outage, threaded=True, request_handler=QuietRequestHandler)
    # A short poll interval makes shutdown() quick (it waits for the loop to notice).
    thread = threading.Thread(
        target=server.serve_forever, args=(0.01,), name="scim-server", daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{server.port}/v2"
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    client = httpx.Client(base_url=url, headers=headers, timeout=5)
    return ScimServer(url, token, outage, server, thread, client)


@pytest.fixture
def scim_server() -> Iterator[ScimServer]:
    """A fresh, empty SCIM server that requires the bearer token TOKEN."""
    server = start_scim_server()
    yield server
    server.stop()


@pytest.fixture
def open_scim_server() -> Iterator[ScimServer]:
    """A fresh, empty SCIM server that requires no authentication."""
    server = start_scim_server(token=None)
    yield server
    server.stop()
