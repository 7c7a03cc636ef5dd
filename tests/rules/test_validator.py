"""rules/validator.py: CompiledSchema loads as its schema's own `load`, or says it cannot."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, pre_load

from policyd.rules.loader import rule_files
from policyd.rules.schema import RuleFileSchema
from policyd.rules.source import parse_document
from policyd.rules.template import expand, is_template
from policyd.rules.validator import CompiledSchema, Invalid
from tests.conftest import POLICIES

SCHEMA = RuleFileSchema()
COMPILED = CompiledSchema(SCHEMA)


def outcome(load, data):
    """("ok", result) or ("error", None) of one load."""
    try:
        return "ok", load(data)
    except (Invalid, ValidationError):
        return "error", None


def example_documents() -> list[dict]:
    """Every package document of the example policies, templates stamped out."""
    found = []
    for path in rule_files(POLICIES):
        if path.suffix == ".csv" or path.name.startswith("catalog"):
            continue
        document = parse_document(path.read_text(encoding="utf-8"), str(path))
        if is_template(document):
            found.extend(d.data for d in expand(document, {}, path.name, []))
        elif isinstance(document.data, dict) and "package" in document.data:
            found.append(document.data)
    return found


EXAMPLES = example_documents()
TEXT = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", "x" * 300, "user:ada", "group:g", "owners", "manager", "PT8H", "P3D"]),
    st.sampled_from(["deny", "auto_approve", "require_approval", "0 9 * * 1", "2026-01-01"]),
)
SCALAR = st.one_of(TEXT, st.booleans(), st.integers(), st.floats(), st.none(), st.just(math.inf))
VALUE = st.one_of(
    SCALAR,
    st.lists(SCALAR, max_size=3),
    st.dictionaries(TEXT, SCALAR, max_size=3),
    st.just({"approvers": ["manager"]}),
    st.just({"duration": "PT1H"}),
    st.just({"subject.type": "member"}),
)


def paths(value, prefix=()):
    """Every key path in `value`, parents before children."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


@st.composite
def mutated_documents(draw):
    """An example package document with a few values replaced, removed or added."""
    document = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(0, 3))):
        places = list(paths(document))[1:]
        if not places:
            break
        path = draw(st.sampled_from(places))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "remove" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(TEXT)] = copy.deepcopy(draw(VALUE))
        else:
            parent[path[-1]] = copy.deepcopy(draw(VALUE))
    return document


def test_every_example_package_loads_alike():
    """The shipped policies: the same packages, with nothing left to marshmallow's errors."""
    assert len(EXAMPLES) >= 5
    for document in EXAMPLES:
        assert COMPILED.load(document) == SCHEMA.load(document)


@settings(max_examples=400, deadline=None)
@given(mutated_documents())
def test_a_mutated_document_loads_alike_or_is_refused_alike(document):
    """Any change to a valid document: the same result, or both refuse it."""
    assert outcome(CompiledSchema(SCHEMA).load, document) == outcome(SCHEMA.load, document)


def test_an_object_loaded_twice_is_judged_once():
    """Template rows share their placeholder-free parts; a shared part is loaded once."""
    loader = CompiledSchema(SCHEMA)
    document = copy.deepcopy(EXAMPLES[0])
    twin = {"apiVersion": document["apiVersion"], "package": dict(document["package"])}
    first = loader.load(document)["package"]
    second = loader.load(twin)["package"]
    assert first == second and first.rules[0] is second.rules[0]


def test_an_equal_but_different_object_is_judged_again():
    loader = CompiledSchema(SCHEMA)
    document = EXAMPLES[0]
    first = loader.load(document)["package"]
    second = loader.load(copy.deepcopy(document))["package"]
    assert first == second and first.rules[0] is not second.rules[0]


def test_a_schema_with_hooks_it_does_not_precompute_is_loaded_by_its_own_load():
    class Trimmed(Schema):
        name = fields.String(required=True)

        @pre_load
        def trim(self, data, **kwargs):
            return {key: value.strip() for key, value in data.items()}

    loader = CompiledSchema(Trimmed())
    assert not loader.plain
    assert loader.load({"name": "  ada "}) == {"name": "ada"}
    with pytest.raises(Invalid):
        loader.load({"name": "ada", "age": "1"})
