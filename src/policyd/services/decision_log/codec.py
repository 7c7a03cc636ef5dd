"""The spool line of a decision-log entry: the `decisions` row, encoded once, decoded for SQL."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring_ascii
from operator import itemgetter
from typing import Any

from sqlalchemy import String, Table
from sqlalchemy.engine import Dialect

from policyd.services.errors import InvalidError
from policyd.store.models import DecisionRecord

TABLE: Table = DecisionRecord.__table__
# Spooled entries are never kept: an entry is kept when written with its reference, in the
# transaction of the request (DecisionService.evaluate), never through the spool.
COLUMNS = tuple(c.name for c in TABLE.columns if c.name != "kept")
JSON_COLUMNS = ("matched", "input", "result")  # spooled and inserted as JSON text
_HEAD = frozenset(COLUMNS) - frozenset(JSON_COLUMNS)

# Text columns and their lengths. PostgreSQL refuses longer values and NUL characters (SQLite
# stores anything); entries are checked before they are spooled, because a row the drainer
# could never insert must be the caller's 422.
_TEXT = {c.name: c.type.length for c in TABLE.columns if isinstance(c.type, String)}
MALFORMED = "a value is too long or malformed for the database"  # as api.errors says on DataError
NOT_AN_ENTRY = "not a decision-log entry"

# A spool line that is no entry, and why: kept aside by the storer, never dropped.
Refused = tuple[bytes, str]


def compact_encoder(*, allow_nan: bool = True) -> Callable[[Any], str]:
    """`JSONEncoder(separators=(",", ":"), check_circular=False, allow_nan=...).encode`:
    compact ASCII JSON text, as the log's JSON columns hold it. `encode` makes a new C encoder
    on every call, a good part of a small value's cost; this one is made once (as
    rules/engine.py does for facts)."""
    encoder = json.JSONEncoder(allow_nan=allow_nan, separators=(",", ":"), check_circular=False)
    if c_make_encoder is None:  # Python built without the json accelerator
        return encoder.encode
    chunks = c_make_encoder(
        None, encoder.default, encode_basestring_ascii, None, ":", ",", False, False, allow_nan
    )
    return lambda value: "".join(chunks(value, 0))


_ENCODERS = {nan: compact_encoder(allow_nan=nan) for nan in (True, False)}  # by allow_nan


class JsonText(str):
    """The JSON text of a JSON column's value, encoded already (compact, ASCII, no NaN):
    `encode` spools it as it is instead of encoding the value again."""


def encode(entry: dict[str, Any], *, allow_nan: bool, strict: bool) -> bytes:
    """One spool line for a `decisions` row: its plain columns as a JSON object, then each
    JSON column's text, separated by tabs (JSON text never holds a raw tab or newline).

    Raises:
        InvalidError: with `strict` (PostgreSQL), a text value the column refuses (too long,
            NUL characters); without `allow_nan`, NaN or infinity in the JSON columns.
    """
    if strict:
        for name, limit in _TEXT.items():
            value = entry.get(name)
            if isinstance(value, str) and ("\x00" in value or (limit and len(value) > limit)):
                raise InvalidError(MALFORMED)
    head = {name: entry[name] for name in _HEAD}
    head["at"] = entry["at"].isoformat()
    encoder = _ENCODERS[allow_nan]
    try:
        parts = [encoder(head)]
        for name in JSON_COLUMNS:
            value = entry[name]
            parts.append(value if type(value) is JsonText else encoder(value))
    except ValueError:
        raise InvalidError(MALFORMED) from None
    return "\t".join(parts).encode("ascii") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """The row in a spool line, its JSON columns still as text.

    Raises:
        ValueError: not a line `encode` wrote.
    """
    row = parse(line)
    row["at"] = datetime.fromisoformat(row["at"])
    return row


def parse(line: bytes) -> dict[str, Any]:
    """`decode` with `at` left as its ISO 8601 text."""
    head, *documents = line.decode("ascii").split("\t")
    row = json.loads(head)
    if len(documents) != len(JSON_COLUMNS) or not isinstance(row, dict) or row.keys() != _HEAD:
        raise ValueError(NOT_AN_ENTRY)
    if not isinstance(row["at"], str):
        raise TypeError(NOT_AN_ENTRY)
    row.update(zip(JSON_COLUMNS, documents, strict=True))
    return row


def row_values(lines: list[bytes], bad: list[Refused], dialect: Dialect) -> list[tuple]:
    """The `COLUMNS` values of the entries in `lines`, in order, as `dialect`'s driver takes
    them (`at` as the column type binds it, the JSON columns as text); lines that are no
    entry are added to `bad`."""
    at = _at_binder(dialect)
    values = []
    for line in lines:
        try:
            row = parse(line)
            row["at"] = at(row["at"])
        except (ValueError, KeyError, TypeError):
            bad.append((line, NOT_AN_ENTRY))
            continue
        values.append(_IN_ORDER(row))
    return values


_IN_ORDER = itemgetter(*COLUMNS)


@functools.lru_cache(maxsize=8)  # per engine's dialect: made once, not per slice of entries
def _at_binder(dialect: Dialect) -> Callable[[str], Any]:
    """ISO 8601 text of `at` -> what `dialect`'s driver is given for it: the whole bind
    processing of the column's type (UTCDateTime, then the dialect's own), so that the same
    moment is always the same stored value and comparisons hold."""
    bind = TABLE.c.at.type.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
    if dialect.name != "sqlite":
        return lambda text: bind(datetime.fromisoformat(text))

    def sqlite_text(text: str) -> str:
        moment = datetime.fromisoformat(text)  # refuses what is no moment
        if (
            len(text) == 32  # 2026-12-07T10:05:43.123456+00:00, as encode writes it
            and text[26:] == "+00:00"
            and text[4] == text[7] == "-"
            and text[10] == "T"
            and text[19] == "."
        ):
            # SQLite stores it as text: the same as `bind` makes, without its calls.
            return f"{text[:10]} {text[11:26]}"
        return bind(moment)

    return sqlite_text


def copy_values(lines: list[bytes], bad: list[Refused]) -> Iterator[list[Any]]:
    """The `COLUMNS` values of the entries in `lines`, for COPY: `at` stays ISO 8601 text
    with its UTC offset (a timestamptz takes it as it is), the JSON columns stay text; lines
    that are no entry are added to `bad`."""
    for line in lines:
        try:
            row = parse(line)
        except (ValueError, KeyError, TypeError):
            bad.append((line, NOT_AN_ENTRY))
            continue
        yield [row[name] for name in COLUMNS]


def entry_time(line: bytes) -> datetime | None:
    """When the entry in `line` was decided; None if it is no entry."""
    try:
        return datetime.fromisoformat(parse(line)["at"])
    except (ValueError, KeyError, TypeError):
        return None
