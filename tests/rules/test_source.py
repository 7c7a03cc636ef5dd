"""YAML documents with key lines."""

from __future__ import annotations

import tracemalloc

import pytest
import yaml

from policyd.rules import source
from policyd.rules.source import Problem, ProblemsError, flatten_messages, parse_document


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


def test_control_characters_are_a_problem_with_a_line(loader):
    """Text YAML refuses to read is reported with its line, not raised."""
    with pytest.raises(ProblemsError) as caught:
        parse_document("a: 1\nb: \x98\n", "f.yaml")
    assert str(caught.value).startswith("f.yaml:2: invalid YAML")


def billion_laughs(levels: int = 12) -> str:
    """A YAML alias bomb of about 1.5 KB: each level repeats the previous one nine times."""
    lines = ["apiVersion: policyd/v1", "laughs0: &laughs0 [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, levels):
        repeated = ", ".join([f"*laughs{level - 1}"] * 9)
        lines.append(f"laughs{level}: &laughs{level} [{repeated}]")
    lines.append(f"package: {{id: lol, displayName: *laughs{levels - 1}}}")
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["libyaml", "pure-python"])
def loader(request, monkeypatch):
    """Both YAML parsers PyYAML may use give the same answers."""
    if request.param == "pure-python":
        monkeypatch.setattr(source, "_Loader", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")
    return request.param


def problem_of(text: str) -> str:
    with pytest.raises(ProblemsError) as caught:
        parse_document(text, "f.yaml")
    (problem,) = caught.value.problems
    return str(problem)


def test_an_alias_bomb_is_refused_at_its_line_without_expanding_it(loader):
    """A 1.5 KB billion-laughs document is refused where the aliases exceed their budget,
    having used almost no memory."""
    text = billion_laughs()
    assert 1300 < len(text) < 1700
    tracemalloc.start()
    try:
        message = problem_of(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.startswith("f.yaml:6: invalid YAML: aliases repeat more than 10000 values")
    assert peak < 5_000_000


def test_aliases_within_the_budget_share_a_value(loader):
    """An anchored value may be repeated; each copy reports the anchor's lines."""
    doc = parse_document("a: &stage {approvers: [manager]}\nb: *stage\n", "f.yaml")
    assert doc.data == {"a": {"approvers": ["manager"]}, "b": {"approvers": ["manager"]}}
    assert doc.line_of(("b",)) == 2
    assert doc.line_of(("b", "approvers")) == 1


def test_flow_nesting_ten_thousand_deep_is_refused_at_its_line(loader):
    """10,000 nested lists are refused as too deep, not a RecursionError."""
    message = problem_of("a: 1\nb: " + "[" * 10_000 + "]" * 10_000 + "\n")
    assert message.startswith("f.yaml:2: invalid YAML: ")
    assert "nest" in message  # ours ("nested deeper than 64 levels") or libyaml's


def test_block_nesting_deeper_than_the_limit_is_refused_at_the_line_that_passes_it(loader):
    """Indented mappings 65 levels deep are refused at the 65th level's line."""
    text = "".join("  " * i + "k:\n" for i in range(80)) + "  " * 80 + "k: 1\n"
    assert problem_of(text) == "f.yaml:65: invalid YAML: nested deeper than 64 levels"


def test_nesting_at_the_limit_is_read():
    """64 nested mappings are within the bound."""
    text = "".join("  " * i + "k:\n" for i in range(63)) + "  " * 63 + "k: 1\n"
    data = parse_document(text, "f.yaml").data
    for _ in range(64):
        data = data["k"]
    assert data == 1


def test_an_alias_that_nests_past_the_limit_is_refused(loader):
    """Depth counts what an alias repeats: a deep anchored value cannot be nested again."""
    deep = "[" * 40 + "]" * 40
    text = (
        f"a: &deep {deep}\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*deep]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
    )
    assert problem_of(text).startswith(
        "f.yaml:2: invalid YAML: alias *deep nests the document deeper than 64 levels"
    )


def test_a_recursive_alias_is_refused(loader):
    """An alias inside the value it names is refused (it would never end)."""
    assert problem_of("a: &x [1, *x]\n") == (
        "f.yaml:1: invalid YAML: alias *x repeats a value that contains it"
    )


def test_an_anchor_defined_twice_is_refused(loader):
    """Redefining an anchor is refused, as PyYAML does."""
    assert problem_of("a: &x 1\nb: &x 2\n") == "f.yaml:2: invalid YAML: anchor &x is defined twice"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("1" + "0" * 5000, "Exceeds the limit"),
        ("0000-01-01", "year 0 is out of range"),
        ("2026-02-30", "day is out of range for month"),
    ],
)
def test_a_scalar_python_cannot_hold_is_a_problem_at_its_line(loader, value, words):
    """Plain scalars that resolve to an impossible int or date are problems, not tracebacks."""
    message = problem_of(f"a: 1\nb: {value}\n")
    assert message.startswith("f.yaml:2: invalid value '")
    assert words in message


def test_a_second_document_is_refused(loader):
    """A rule file is one YAML document."""
    assert problem_of("a: 1\n---\nb: 2\n").startswith("f.yaml:2: invalid YAML: ")
