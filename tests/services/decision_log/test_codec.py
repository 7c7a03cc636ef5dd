"""Spool lines: the `decisions` row encoded once, JSON columns kept as text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from policyd.services.decision_log.codec import (
    JsonText,
    compact_encoder,
    decode,
    encode,
    entry_time,
)
from policyd.services.errors import InvalidError
from tests.spool_support import entry


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
