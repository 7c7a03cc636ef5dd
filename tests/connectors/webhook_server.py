"""A real webhook receiver on loopback that checks signatures and records events, for tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from policyd.connectors.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)

SIGNING_KEY = "test-signing-key"


@dataclass(frozen=True)
class Delivery:
    """One signed request the receiver accepted."""

    path: str
    headers: dict[str, str]  # keyed in lower case
    body: dict[str, Any] | None


class WebhookServer:
    """Receives on 127.0.0.1 at a free port; `answer` and `delay` make it misbehave.

    `deliveries` holds every accepted request, duplicates included; `events` holds each
    event id once, as a receiver that de-duplicates would apply it. POSTs to /members
    answer with who holds a resource after the granted and removed events.
    """

    def __init__(self, key: str = SIGNING_KEY, clock: Callable[[], datetime] | None = None):
        self.key = key
        self.clock = clock or (lambda: datetime.now(UTC))
        self.answer = 200  # status for every request; anything but 2xx records nothing
        self.delay = 0.0  # seconds to wait before answering
        self.deliveries: list[Delivery] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.rejected = 0  # requests whose signature did not verify
        self.cut_short = 0  # requests whose sender went away before the whole body came
        self.members: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._released = threading.Event()  # ends every pending delay at shutdown
        self._httpd = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the request threads
        self._thread.join()

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        """Status and JSON answer for one request (`headers` keyed in lower case)."""
        signed = verify_signature(
            self.key,
            headers.get(TIMESTAMP_HEADER.lower(), ""),
            raw,
            headers.get(SIGNATURE_HEADER.lower(), ""),
            now=self.clock(),
        )
        if not signed:
            with self._lock:
                self.rejected += 1
            return 401, {"error": "bad signature"}
        if self.delay:
            self._released.wait(self.delay)
        if not 200 <= self.answer < 300:
            return self.answer, {"error": "told to fail"}
        body = json.loads(raw) if raw else None
        with self._lock:
            self.deliveries.append(Delivery(path, headers, body))
            if path == "/members":
                return 200, sorted(self.members.get(body["resource"], set()))
            event_id = headers.get(EVENT_ID_HEADER.lower())
            if event_id is not None and event_id not in self.events:
                self.events[event_id] = body
                self._apply(body)
        return 200, {"ok": True}

    def _apply(self, event: dict[str, Any]) -> None:
        holders = self.members.setdefault(event.get("resource", ""), set())
        if event["event"] == "access.granted":
            holders.add(event["user"]["id"])
        elif event["event"] == "access.removed":
            holders.discard(event["user"]["id"])


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout tests) leaves a broken pipe; nothing to report


def _handler(server: WebhookServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            if len(raw) < length:  # a sender killed mid-write: nobody is left to answer
                with server._lock:
                    server.cut_short += 1
                self.close_connection = True
                return
            self._answer(raw)

        def _answer(self, raw: bytes) -> None:
            status, answer = server.handle(
                self.path, {k.lower(): v for k, v in self.headers.items()}, raw
            )
            content = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler


@pytest.fixture
def webhook_server() -> Iterator[WebhookServer]:
    """A running receiver, stopped after the test."""
    server = WebhookServer()
    server.start()
    yield server
    server.stop()
