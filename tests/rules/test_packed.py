"""The packed form: what a process loads instead of parsing and validating rule files again."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from policyd.rules import load_texts
from policyd.rules.packed import FORMAT, PackedFormatError, pack_bundle, unpack_bundle
from tests.rules import test_properties as props
from tests.rules.test_question import QUESTIONS


def test_the_example_policies_unpack_to_exactly_what_was_loaded(example_bundle):
    """Every package, rule, condition, lifetime and approval, and the version, survive packing."""
    unpacked = unpack_bundle(pack_bundle(example_bundle))
    assert dict(unpacked.packages) == example_bundle.packages
    assert unpacked.version == example_bundle.version
    assert unpacked.rule_count == example_bundle.rule_count


@settings(max_examples=100, deadline=None)
@given(props.rule_lists())
def test_any_valid_package_unpacks_to_exactly_what_was_loaded(rules):
    """Generated rules (every operator, window and duration) come back equal, field by field."""
    bundle = load_texts({"pkg.yaml": props.file_text(rules)})
    assert dict(unpack_bundle(pack_bundle(bundle)).packages) == bundle.packages


def test_questions_unpack_to_exactly_what_was_loaded():
    """A package's questions (every type, localised text, bounds, options) survive packing."""
    bundle = load_texts({"pkg.yaml": QUESTIONS})
    unpacked = unpack_bundle(pack_bundle(bundle)).packages["pkg"]
    assert unpacked.questions == bundle.package("pkg").questions
    assert unpacked == bundle.package("pkg")


def test_a_package_is_decoded_only_when_first_read(example_bundle):
    """Unpacking decodes nothing; reading one package decodes that one, once."""
    packages = unpack_bundle(pack_bundle(example_bundle)).packages
    assert packages.decoded == 0
    assert "scope-a-readers" in packages and len(packages) == len(example_bundle.packages)
    assert packages.decoded == 0
    first = packages["scope-a-readers"]
    assert packages["scope-a-readers"] is first
    assert packages.decoded == 1
    with pytest.raises(KeyError):
        packages["no-such-package"]


def test_the_packed_form_is_json_data_one_line_per_package(example_bundle):
    """A header line names the format, then each line is a package id and plain JSON."""
    header, *lines = pack_bundle(example_bundle).split("\n")
    assert json.loads(header)["format"] == FORMAT
    assert sorted(line.split("\t")[0] for line in lines) == sorted(example_bundle.packages)
    for line in lines:
        assert isinstance(json.loads(line.split("\t", 1)[1]), dict)


@pytest.mark.parametrize(
    "text",
    ['{"format": "policyd-packed/0"}\npkg\t{}', "not json", "", '["policyd-packed/1"]'],
    ids=["older format", "not json", "empty", "not a header"],
)
def test_anything_but_this_format_is_refused(text):
    """Another format, or no header, is a PackedFormatError (the caller loads the files)."""
    with pytest.raises(PackedFormatError):
        unpack_bundle(text)
