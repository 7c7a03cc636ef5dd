"""Templates stamp out ordinary packages from rows; errors name the template line and the row."""

from __future__ import annotations

from datetime import UTC, datetime
from textwrap import dedent

import pytest

from policyd.domain import Outcome, RequestOptions, Subject
from policyd.rules import Policy, ProblemsError, load_bundle, load_texts

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

SCOPES = dedent(
    """\
    apiVersion: policyd/v1
    template:
      id: scope-readers
      parameters: [scope]
      {rows}
      packages:
        - id: "${{scope|slug}}-readers"
          displayName: "${{scope}} readers (just in time)"
          resources:
            - {{connector: directory, resource: "group:Group.${{scope}}.Readers", role: member}}
          lifetime: {{duration: PT8H, max: PT8H}}
          rules:
            - id: eligible-members
              priority: 100
              when: {{subject.groups: {{contains: "Group.${{scope}}.Readers.Eligible"}}}}
              then: {{decision: auto_approve}}
            - id: everyone-else
              when: {{subject.groups: {{not_contains: "Group.${{scope}}.Readers.Eligible"}}}}
              then:
                decision: require_approval
                approval:
                  stages: [{{approvers: ["group:Group.${{scope}}.Approvers"], timeout: PT4H}}]
        - id: "${{scope|slug}}-eligibility"
          displayName: "${{scope}} readers eligibility"
          resources:
            - {{connector: directory, resource: "group:Group.${{scope}}.Readers.Eligible"}}
          lifetime: {{duration: P90D}}
          rules:
            - id: approvers-decide
              when: {{subject.type: member}}
              then:
                decision: require_approval
                approval:
                  stages: [{{approvers: ["group:Group.${{scope}}.Approvers"], timeout: P3D}}]
    """
)


def template(rows: str) -> str:
    return SCOPES.format(rows=rows)


def decide(policy: Policy, package: str, **subject) -> tuple[Outcome, str | None, tuple]:
    decision = policy.decide(package, Subject(id="ada", **subject), RequestOptions(), now=NOW)
    stages = tuple(stage.approvers for stage in decision.stages)
    return decision.outcome, decision.rule, stages


def test_inline_rows_make_a_package_pair_per_scope():
    """Each row makes the readers package and its eligibility package, decided like
    hand-written ones."""
    bundle = load_texts({"scopes.yaml": template("rows: [{scope: ScopeB}, {scope: Scope C}]")})
    assert sorted(bundle.packages) == [
        "scope-c-eligibility",
        "scope-c-readers",
        "scopeb-eligibility",
        "scopeb-readers",
    ]
    policy = Policy(bundle)
    try:
        eligible = frozenset({"Group.ScopeB.Readers.Eligible"})
        assert decide(policy, "scopeb-readers", groups=eligible)[:2] == (
            Outcome.AUTO_APPROVE,
            "eligible-members",
        )
        outcome, rule, stages = decide(policy, "scope-c-readers", groups=eligible)
        assert (outcome, rule) == (Outcome.REQUIRE_APPROVAL, "everyone-else")
        assert stages == (("group:Group.Scope C.Approvers",),)
    finally:
        policy.close()


def test_a_generated_package_names_its_template_and_row():
    """A package made from a template knows the template id and the file:line of its row."""
    bundle = load_texts(
        {
            "scopes.yaml": template("rowsFrom: scopes.csv"),
            "scopes.csv": "scope\nScopeA\nScopeB\n",
        }
    )
    package = bundle.packages["scopeb-readers"]
    assert (package.template, package.template_row) == ("scope-readers", "scopes.csv:3")
    assert package.file == "scopes.yaml"
    assert package.rule("eligible-members").line == 13


def test_rows_can_come_from_a_yaml_rows_file():
    """`rowsFrom: x.rows.yaml` reads a YAML list of rows beside the template."""
    bundle = load_texts(
        {
            "teams/scopes.yaml": template("rowsFrom: scopes.rows.yaml"),
            "teams/scopes.rows.yaml": "- scope: ScopeA\n- scope: ScopeB\n",
        }
    )
    assert bundle.packages["scopea-readers"].template_row == "teams/scopes.rows.yaml:1"
    assert len(bundle.packages) == 4


def test_load_bundle_reads_the_csv_beside_the_template(tmp_path):
    """A policies folder with a template and its CSV loads, and the CSV is part of the
    bundle's files (published with the version)."""
    (tmp_path / "scopes.yaml").write_text(template("rowsFrom: scopes.csv"))
    (tmp_path / "scopes.csv").write_text("scope\nScopeA\n")
    bundle = load_bundle(tmp_path)
    assert sorted(bundle.packages) == ["scopea-eligibility", "scopea-readers"]
    assert set(bundle.files) == {"scopes.yaml", "scopes.csv"}


def test_changing_a_row_changes_the_version():
    """The version id covers the rows: another scope is another version."""
    one = load_texts({"s.yaml": template("rowsFrom: s.csv"), "s.csv": "scope\nA\n"})
    two = load_texts({"s.yaml": template("rowsFrom: s.csv"), "s.csv": "scope\nA\nB\n"})
    again = load_texts({"s.yaml": template("rowsFrom: s.csv"), "s.csv": "scope\r\nA\r\n"})
    assert one.version.id != two.version.id
    assert one.version.id == again.version.id


def problems_of(texts: dict[str, str]) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load_texts(texts)
    return [str(problem) for problem in caught.value.problems]


def test_an_error_in_a_generated_package_names_the_template_line_and_the_row():
    """A value that is only wrong once substituted is reported at the template's line, with
    the row that made it."""
    text = template("rowsFrom: s.csv").replace(
        "lifetime: {duration: PT8H, max: PT8H}", "lifetime: {duration: '${scope}'}"
    )
    found = problems_of({"s.yaml": text, "s.csv": "scope\nPT8H\nsoon\n"})
    assert len(found) == 1, found
    assert found[0].startswith("s.yaml:11: package.lifetime.duration: ")
    assert found[0].endswith("[row s.csv:3 (scope=soon)]")


def test_an_unknown_placeholder_is_refused_at_its_line():
    """`${team}` in a template without that parameter is an error at the line that uses it."""
    text = template("rows: [{scope: A}]").replace("${scope} readers (just", "${team} readers (")
    found = problems_of({"s.yaml": text})
    assert found == [
        "s.yaml:8: template.packages[0].displayName: unknown parameter 'team' in ${team}; "
        "parameters: scope"
    ]


def test_a_row_missing_a_parameter_is_refused_at_the_rows_line():
    """A CSV row without a value for a parameter is an error at that row's file:line."""
    found = problems_of({"s.yaml": template("rowsFrom: s.csv"), "s.csv": "scope\nA\n\n,x\n"})
    assert any(p.startswith("s.csv:4: parameter 'scope' needs a text value") for p in found), found


def test_two_rows_making_the_same_package_are_refused_naming_both():
    """Rows whose slugs collide make the same package id twice: refused, naming the rows."""
    found = problems_of(
        {"s.yaml": template("rows: [{scope: Scope A}, {scope: scope-a}]")},
    )
    assert any("duplicate package id 'scope-a-readers'" in p for p in found), found
    assert any("row s.yaml:" in p and "scope=scope-a" in p for p in found), found


def test_a_missing_rows_file_and_unknown_keys_are_refused():
    """rowsFrom must name a file of the bundle; unknown template keys are errors."""
    text = template("rowsFrom: missing.csv").replace(
        "  parameters:", "  paramters: x\n  parameters:"
    )
    found = problems_of({"s.yaml": text})
    assert "s.yaml:4: template.paramters: unknown key" in found
    assert any("no file 'missing.csv' beside the template" in p for p in found), found


def test_substitution_is_text_only():
    """A parameter value is text: it cannot add keys, lists or placeholders of its own."""
    found = problems_of({"s.yaml": template("rows: [{scope: '${scope}'}]")})
    assert any("no ${" in p for p in found), found
    bundle = load_texts({"s.yaml": template("rows: [{scope: '{x: 1}'}]")})
    assert bundle.packages["x-1-readers"].display_name == "{x: 1} readers (just in time)"


def test_a_fifty_scope_template_makes_a_hundred_working_packages():
    """Fifty rows make fifty readers packages and fifty eligibility packages, each deciding
    with its own scope's groups."""
    rows = "scope\n" + "".join(f"Scope{n:02}\n" for n in range(50))
    bundle = load_texts({"s.yaml": template("rowsFrom: s.csv"), "s.csv": rows})
    assert len(bundle.packages) == 100
    policy = Policy(bundle)
    try:
        for n in range(50):
            eligible = frozenset({f"Group.Scope{n:02}.Readers.Eligible"})
            assert decide(policy, f"scope{n:02}-readers", groups=eligible)[0] is (
                Outcome.AUTO_APPROVE
            )
            other = frozenset({f"Group.Scope{(n + 1) % 50:02}.Readers.Eligible"})
            assert decide(policy, f"scope{n:02}-readers", groups=other)[2] == (
                (f"group:Group.Scope{n:02}.Approvers",),
            )
    finally:
        policy.close()


def test_a_decision_names_the_template_and_row_of_its_package():
    """Decisions on a generated package carry the template id and row (JSON too); decisions
    on hand-written packages carry none."""
    bundle = load_texts(
        {
            "scopes.yaml": template("rowsFrom: scopes.csv"),
            "scopes.csv": "scope\nScopeA\n",
            "other.yaml": "apiVersion: policyd/v1\npackage:\n  id: other\n  displayName: O\n"
            "  rules:\n    - {id: all, then: {decision: deny}}\n",
        }
    )
    policy = Policy(bundle)
    try:
        made = policy.decide("scopea-readers", Subject(id="a"), RequestOptions(), now=NOW)
        plain = policy.decide("other", Subject(id="a"), RequestOptions(), now=NOW)
    finally:
        policy.close()
    assert made.template == ("scope-readers", "scopes.csv:2")
    assert made.to_dict()["template"] == {"id": "scope-readers", "row": "scopes.csv:2"}
    assert plain.template is None and plain.to_dict()["template"] is None
