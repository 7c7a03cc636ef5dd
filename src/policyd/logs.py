"""Logging for every process kind: JSON lines when not on a terminal, and the request id."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

from policyd.randomness import random_bytes

# The id of the HTTP request (or worker job) being handled, carried into every log line.
request_id: ContextVar[str | None] = ContextVar("policyd_request_id", default=None)

# What a caller may send as X-Request-ID; anything else is replaced by an id of ours, so a
# header can never forge log lines or grow them without bound.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_CONFIGURED = "_policyd_handler"


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as `uuid.uuid4().hex` writes it, from
    pooled random bytes (policyd.randomness), with no UUID object made only to be printed."""
    raw = bytearray(random_bytes(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def accepted_request_id(header: str | None) -> str | None:
    """The caller's X-Request-ID if it is a plain token of at most 128 characters."""
    if header and _ACCEPTED.fullmatch(header):
        return header
    return None


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, periodic task,
    exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            entry["request_id"] = record.request_id
        if getattr(record, "task", None):  # a periodic task's run (policyd.periodic)
            entry["task"] = record.task
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal, with the request id where there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


def configure(level: str = "INFO", stream: IO[str] | None = None, json_lines: bool | None = None):
    """Send policyd's log records (and the libraries') to `stream` (stderr): JSON lines unless
    the stream is a terminal. Calling it again replaces the handler it added, nothing else."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    setattr(handler, _CONFIGURED, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _CONFIGURED, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class Outage:
    """A retry loop's log: the first failure of a run is logged with its traceback, the
    retries that fail after it are not, and the first success after it says so once."""

    def __init__(self, logger: logging.Logger, failed: str, recovered: str):
        self.logger, self.failed_message, self.recovered_message = logger, failed, recovered
        self.down = False

    def failed(self) -> None:
        """Call from an `except` block: logs the exception unless this outage was logged."""
        if not self.down:
            self.logger.exception(self.failed_message)
        self.down = True

    def succeeded(self) -> None:
        """Call after a pass that worked: logs the recovery when an outage was going on."""
        if self.down:
            self.logger.info(self.recovered_message)
        self.down = False
