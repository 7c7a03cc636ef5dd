"""YAML documents with key lines."""

from __future__ import annotations

from policyd.rules.source import Problem, flatten_messages, parse_document


def test_every_key_and_list_item_has_its_line():
    """Lines are recorded for keys and list items, and ancestors answer for missing paths."""
    doc = parse_document("a:\n  b:\n    - x\n    - {c: 1}\n", "f.yaml")
    assert doc.line_of(("a",)) == 1
    assert doc.line_of(("a", "b")) == 2
    assert doc.line_of(("a", "b", 1, "c")) == 4
    assert doc.line_of(("a", "b", 1, "missing")) == 4


def test_problem_text_is_file_line_key_message():
    """A problem prints as file:line: key: message (no line when unknown)."""
    assert str(Problem("f.yaml", 3, "bad", "a.b[0]")) == "f.yaml:3: a.b[0]: bad"
    assert str(Problem("policies", 0, "no rule files")) == "policies: no rule files"


def test_marshmallow_messages_flatten_to_paths():
    """Nested marshmallow errors become (path, message) pairs."""
    messages = {"a": {0: {"b": ["x"]}, "_schema": ["y"]}}
    assert flatten_messages(messages) == [(("a", 0, "b"), "x"), (("a",), "y")]


def test_control_characters_are_a_problem_with_a_line():
    """Text YAML refuses to read is reported with its line, not raised."""
    import pytest

    from policyd.rules.source import ProblemsError

    with pytest.raises(ProblemsError) as caught:
        parse_document("a: 1\nb: \x98\n", "f.yaml")
    assert str(caught.value).startswith("f.yaml:2: invalid YAML")
