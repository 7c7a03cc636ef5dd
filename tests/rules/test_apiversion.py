"""Every kind of policyd file refuses another format version with the same message."""

from __future__ import annotations

import pytest

from policyd.connectors.config import load_instances
from policyd.rules import ProblemsError, load_texts
from policyd.rules.apiversion import api_version_problem

WRONG = "unknown format version 'policyd/v9'; this policyd reads policyd/v1"


def test_this_version_is_no_problem():
    """policyd/v1 is the format this policyd reads."""
    assert api_version_problem("policyd/v1") is None


def test_a_missing_version_says_what_to_write():
    """No apiVersion at all names the line a file starts with."""
    assert api_version_problem(None) == (
        "missing: a policyd file starts with apiVersion: policyd/v1"
    )


def test_rule_file_and_template_refuse_another_version_alike():
    """A rule file and a template with policyd/v9 get the same message at apiVersion."""
    rule = "apiVersion: policyd/v9\npackage: {id: p, displayName: P, resources: [], rules: []}\n"
    template = "apiVersion: policyd/v9\ntemplate: {id: t}\n"
    for name, text in (("p.yaml", rule), ("t.template.yaml", template)):
        with pytest.raises(ProblemsError) as err:
            load_texts({name: text})
        assert WRONG in [problem.message for problem in err.value.problems], name


def test_connectors_file_refuses_another_version_alike(tmp_path):
    """The connectors file says the same as a rule file."""
    path = tmp_path / "connectors.yaml"
    path.write_text("apiVersion: policyd/v9\nconnectors: []\n")
    with pytest.raises(ProblemsError) as err:
        load_instances(path)
    assert [problem.message for problem in err.value.problems] == [WRONG]
