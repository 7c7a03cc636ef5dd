"""Spool lines: the `decisions` row encoded once, JSON columns kept as text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from policyd.services.decision_log.codec import (
    COLUMNS,
    TABLE,
    JsonText,
    compact_encoder,
    decode,
    encode,
    entry_time,
    row_values,
)
from policyd.services.errors import InvalidError
from tests.spool_support import entry, line


def test_a_line_holds_json_text_per_column():
    """A line is the plain columns as JSON, then each JSON column's text, tab-separated."""
    row = entry(1) | {"reason": "tab\there", "input": {"subject": {"note": "line\nbreak"}}}
    line = encode(row, allow_nan=True, strict=False)
    assert line.count(b"\t") == 3 and line.endswith(b"\n") and line.count(b"\n") == 1
    decoded = decode(line.rstrip(b"\n"))
    assert decoded["at"] == row["at"] and decoded["input"] == '{"subject":{"note":"line\\nbreak"}}'


def test_json_text_is_spooled_as_it_is():
    """A result encoded already (JsonText) is not encoded again."""
    row = entry(1) | {"result": JsonText('{"decision":"deny"}')}
    line = encode(row, allow_nan=True, strict=False)
    assert decode(line.rstrip(b"\n"))["result"] == '{"decision":"deny"}'


def test_strict_encoding_refuses_what_postgresql_would():
    """NUL characters, over-long text and NaN are the caller's error before anything spools."""
    with pytest.raises(InvalidError):
        encode(entry(1) | {"subject_id": "a\x00b"}, allow_nan=False, strict=True)
    with pytest.raises(InvalidError):
        encode(entry(1) | {"subject_id": "x" * 201}, allow_nan=False, strict=True)
    with pytest.raises(InvalidError):
        encode(entry(1) | {"input": {"n": float("nan")}}, allow_nan=False, strict=True)


def test_entry_time_reads_when_an_entry_was_decided():
    """The lag's age comes from the entry itself; a line that is no entry has none."""
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert entry_time(encode(entry(1, at), allow_nan=False, strict=True)) == at
    assert entry_time(b"not a decision-log entry") is None


@pytest.mark.parametrize("allow_nan", [True, False])
def test_compact_encoder_writes_what_json_encoder_writes(allow_nan):
    """compact_encoder's text is JSONEncoder's with the same options, and NaN is refused
    alike where allow_nan is off."""
    expected = json.JSONEncoder(allow_nan=allow_nan, separators=(",", ":"), check_circular=False)
    encode_compact = compact_encoder(allow_nan=allow_nan)
    values = [
        {"a": [1, 2.5, None, True], "é": {"nested": "tab\there \u2603 \ud800"}},
        "plain text",
        ["matched-rule"],
        10**30,
    ]
    for value in values:
        assert encode_compact(value) == expected.encode(value)
    if allow_nan:
        assert encode_compact([float("nan")]) == "[NaN]"
    else:
        with pytest.raises(ValueError):
            encode_compact([float("nan")])


@given(
    moment=st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    offset=st.sampled_from([timedelta(0), timedelta(hours=5, minutes=30), -timedelta(hours=8)]),
)
@pytest.mark.parametrize("name", ["sqlite", "postgresql"])
def test_row_values_bind_at_as_the_column_type_does(name, moment, offset):
    """Each dialect's driver gets for `at` what SQLAlchemy's own binding of the column gives
    (the same stored text on SQLite, microseconds or none, whatever the written offset), and
    the columns in table order, JSON columns as their text."""
    dialect = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[name]
    written = moment.astimezone(timezone(offset))
    line = encode(entry(1, written), allow_nan=False, strict=True).rstrip(b"\n")
    bad: list = []
    (values,) = row_values([line], bad, dialect)
    bind = TABLE.c.at.type.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)
    expected = decode(line)
    expected["at"] = bind(moment)
    assert values == tuple(expected[column] for column in COLUMNS) and not bad


def test_row_values_keep_lines_that_are_no_entry_aside():
    """A line that is no entry, or whose moment has no offset, is added to `bad` and left
    out; the rest are still given, a moment written another ISO 8601 way (a week date) by
    the column type's own binding."""
    good = line(1, datetime(2026, 3, 2, 12, 0, 0, 5, tzinfo=UTC)).rstrip(b"\n")
    naive = good.replace(b'+00:00"', b'"')
    week = good.replace(b'"2026-03-02T', b'"2026-W10-1T')
    bad: list = []
    values = row_values([b"no entry", naive, week, good], bad, sqlite.dialect())
    assert [each for each, _ in bad] == [b"no entry", naive]
    at = COLUMNS.index("at")
    assert [row[at] for row in values] == ["2026-03-02 12:00:00.000005"] * 2
