"""The semantic diff compares the loaded model, field by field, never the text."""

from __future__ import annotations

import yaml

from policyd.rules import load_texts
from policyd.rules.diff import diff_bundles
from policyd.rules.diff_text import NO_CHANGE, render_markdown, render_text
from tests.conftest import POLICIES, rule_file

DENY_CONTRACTORS = """\
    - id: no-contractors
      when: {subject.employeeType: contractor}
      then: {decision: deny, reason: Contractors cannot read Scope A}

"""

BASE = rule_file(
    """
    apiVersion: policyd/v1
    package:
      id: p
      displayName: P
      owners: ["group:Owners", "user:ann"]
      resources:
        - {connector: directory, resource: "group:G", role: member}
      lifetime: {duration: P30D}
      rules:
        - id: first
          when: {subject.department: Sales, subject.type: member}
          then: {decision: auto_approve}
        - id: second
          when: {subject.id: {in: [a, b, c]}}
          then: {decision: auto_approve}
        - id: third
          priority: 5
          when: {subject.groups: {contains: X}}
          then:
            decision: require_approval
            approval:
              stages: [{approvers: ["user:ann", "group:Owners"], timeout: P2D}]
    """
)
OTHER = rule_file(
    """
    apiVersion: policyd/v1
    package:
      id: q
      displayName: Q
      lifetime: {duration: P1D}
      rules:
        - id: all
          then: {decision: auto_approve}
    """
)


def diff_of(old: dict[str, str], new: dict[str, str]):
    return diff_bundles(load_texts(old), load_texts(new))


def changed(text: str, old: str, new: str) -> dict[str, str]:
    assert old in text
    return {"p.yaml": text.replace(old, new), "q.yaml": OTHER}


def test_jit_package_at_four_hours_with_a_deny_rule_shows_exactly_those_two_changes(
    example_bundle,
):
    """Acceptance: the JIT example at 4 h instead of 8 h plus a deny rule is one changed
    lifetime and one added rule, nothing else."""
    files = dict(example_bundle.files)
    text = files["scope-a-readers.yaml"]
    text = text.replace("duration: PT8H, max: PT8H", "duration: PT4H, max: PT4H")
    files["scope-a-readers.yaml"] = text.replace("  rules:\n", "  rules:\n" + DENY_CONTRACTORS, 1)
    result = diff_bundles(example_bundle, load_texts(files)).to_dict()
    assert [(p["id"], p["change"]) for p in result["packages"]] == [("scope-a-readers", "changed")]
    package = result["packages"][0]
    assert package["fields"] == [
        {
            "field": "lifetime",
            "before": {"duration": "PT8H", "max": "PT8H"},
            "after": {"duration": "PT4H", "max": "PT4H"},
        }
    ]
    assert package["resources"] == []
    assert [(r["id"], r["change"]) for r in package["rules"]] == [("no-contractors", "added")]
    assert {f["field"]: f["after"] for f in package["rules"][0]["fields"]} == {
        "priority": 0,
        "when": {"subject.employeeType": {"eq": "contractor"}},
        "decision": "deny",
        "reason": "Contractors cannot read Scope A",
    }


def test_reformatting_key_order_comments_and_file_names_are_no_effective_change(example_bundle):
    """Every file rewritten with sorted keys, block style, a comment and a new name: no change."""
    rewritten = {
        f"renamed/{name}": "# reviewed\n"
        + yaml.safe_dump(yaml.safe_load(text), sort_keys=True, default_flow_style=False)
        for name, text in example_bundle.files.items()
    }
    result = diff_bundles(example_bundle, load_texts(rewritten))
    assert not result.effective and result.packages == ()
    assert render_text(result).endswith(NO_CHANGE)


def test_equivalent_conditions_and_order_free_lists_are_no_change():
    """Shorthand, nesting, the order of `all` items, `in` lists, owners and approvers do not
    count."""
    new = (
        BASE.replace(
            "{subject.department: Sales, subject.type: member}",
            "{all: [{subject.type: {eq: member}}, {all: [{subject.department: Sales}]}]}",
        )
        .replace("[a, b, c]", "[c, a, b, a]")
        .replace('["group:Owners", "user:ann"]', '["user:ann", "group:Owners"]')
        .replace('["user:ann", "group:Owners"], timeout', '["group:Owners", "user:ann"], timeout')
    )
    assert not diff_of({"p.yaml": BASE}, {"p.yaml": new}).effective


def test_a_changed_rule_lists_each_changed_field_with_before_and_after():
    """Priority and approval stages of one rule changed: that rule, those two fields."""
    new = changed(BASE, "priority: 5", "priority: 50").copy()
    new["p.yaml"] = new["p.yaml"].replace("timeout: P2D", "timeout: P3D")
    result = diff_of({"p.yaml": BASE, "q.yaml": OTHER}, new)
    (package,) = result.packages
    (rule,) = package.rules
    assert (rule.id, rule.change) == ("third", "changed")
    assert [(f.field, f.before, f.after) for f in rule.fields] == [
        ("priority", 5, 50),
        (
            "approval",
            {"stages": [{"approvers": ["group:Owners", "user:ann"], "timeout": "P2D"}]},
            {"stages": [{"approvers": ["group:Owners", "user:ann"], "timeout": "P3D"}]},
        ),
    ]


def test_swapping_rules_of_equal_priority_changes_which_decides():
    """Two auto-approve rules at the same priority swapped: a ruleOrder change, nothing else."""
    first = "    - id: first\n      when: {subject.department: Sales, subject.type: member}\n"
    first += "      then: {decision: auto_approve}\n"
    second = "    - id: second\n      when: {subject.id: {in: [a, b, c]}}\n"
    second += "      then: {decision: auto_approve}\n"
    assert first + second in BASE
    swapped = BASE.replace(first + second, second + first)
    (package,) = diff_of({"p.yaml": BASE}, {"p.yaml": swapped}).packages
    assert [(f.field, f.before, f.after) for f in package.fields] == [
        ("ruleOrder", ["first", "second"], ["second", "first"])
    ]
    assert package.rules == ()


def test_moving_a_rule_of_its_own_priority_is_no_change():
    """The rule with priority 5 moved to the top: file order decides nothing for it."""
    third = BASE[BASE.index("    - id: third") :]
    moved = BASE.replace(third, "").replace("  rules:\n", "  rules:\n" + third)
    assert not diff_of({"p.yaml": BASE}, {"p.yaml": moved}).effective


def test_packages_and_resources_added_and_removed_are_listed():
    """A package added, one removed, and a resource added to a kept package."""
    new = BASE.replace(
        "  resources:\n", '  resources:\n    - {connector: directory, resource: "group:H"}\n'
    )
    other = OTHER.replace("id: q", "id: r")
    result = diff_of({"p.yaml": BASE, "q.yaml": OTHER}, {"p.yaml": new, "r.yaml": other})
    assert [(p.id, p.change) for p in result.packages] == [
        ("p", "changed"),
        ("q", "removed"),
        ("r", "added"),
    ]
    assert [r.to_dict() for r in result.packages[0].resources] == [
        {"change": "added", "connector": "directory", "resource": "group:H", "role": "member"}
    ]
    assert [(r.id, r.change) for r in result.packages[2].rules] == [("all", "added")]
    assert result.summary()["packages"] == {"added": 1, "removed": 1, "changed": 1}


def test_a_new_incompatibility_shows_once_as_the_field_that_declares_it():
    """incompatibleWith added to p: p's field changes; q's derived deny rule is not a change."""
    new = BASE.replace(
        "  lifetime: {duration: P30D}\n", "  lifetime: {duration: P30D}\n  incompatibleWith: [q]\n"
    )
    result = diff_of({"p.yaml": BASE, "q.yaml": OTHER}, {"p.yaml": new, "q.yaml": OTHER})
    (package,) = result.packages
    assert package.id == "p" and package.rules == ()
    assert [(f.field, f.before, f.after) for f in package.fields] == [
        ("incompatibleWith", None, ["q"])
    ]


def test_text_and_markdown_name_the_package_rule_and_values():
    """The readable forms show the sign, the package, the field's before -> after, the rule."""
    result = diff_of(
        {"p.yaml": BASE, "q.yaml": OTHER}, changed(BASE, "duration: P30D", "duration: P7D")
    )
    text = render_text(result)
    assert "~ package p (p.yaml)\n    lifetime: {duration: P30D} -> {duration: P7D}" in text
    assert text.endswith("1 package changed, 1 field changed")
    markdown = render_markdown(result)
    assert "| changed | lifetime | `{duration: P30D}` | `{duration: P7D}` |" in markdown


TEMPLATE = rule_file(
    """
    apiVersion: policyd/v1
    template:
      id: scope-readers
      parameters: [scope]
      rowsFrom: scopes.csv
      packages:
        - id: "${scope|slug}-readers"
          displayName: "${scope} readers"
          resources:
            - {connector: directory, resource: "group:Group.${scope}.Readers"}
          lifetime: {duration: PT8H}
          rules:
            - id: eligible-members
              when: {subject.groups: {contains: "Group.${scope}.Readers.Eligible"}}
              then: {decision: auto_approve}
    """
)


def templated(rows: list[str], template: str = TEMPLATE) -> dict[str, str]:
    return {"scopes.yaml": template, "scopes.csv": "scope\n" + "".join(f"{r}\n" for r in rows)}


def test_a_new_template_row_adds_its_packages_naming_the_template_and_row():
    """One more parameter row is the packages it makes, added, each naming the template and
    the row; rows reordered are no change."""
    result = diff_of(templated(["ScopeB", "ScopeC"]), templated(["ScopeC", "ScopeB", "ScopeD"]))
    (package,) = result.packages
    assert (package.id, package.change) == ("scoped-readers", "added")
    assert (package.template, package.row) == ("scope-readers", "scopes.csv:4")
    assert "+ package scoped-readers (template scope-readers, row scopes.csv:4)" in render_text(
        result
    )


def test_a_changed_template_changes_every_package_it_makes():
    """The template's lifetime at 4 h: each generated package's lifetime changed, nothing else."""
    shorter = TEMPLATE.replace("duration: PT8H", "duration: PT4H")
    result = diff_of(templated(["ScopeB", "ScopeC"]), templated(["ScopeB", "ScopeC"], shorter))
    assert [(p.id, [f.field for f in p.fields], p.rules) for p in result.packages] == [
        ("scopeb-readers", ["lifetime"], ()),
        ("scopec-readers", ["lifetime"], ()),
    ]


def test_a_removed_package_is_shown_whole_with_its_nested_values(example_bundle):
    """Removing payments-entry lists its fields, resource and rule (lifetime with
    `requested: any`) in text and Markdown, and the other side's incompatibleWith as removed."""
    files = {k: v for k, v in example_bundle.files.items() if k != "payments-entry.yaml"}
    files["quarter-end-finance.yaml"] = files["quarter-end-finance.yaml"].replace(
        "incompatibleWith: [payments-entry]", ""
    )
    result = diff_bundles(example_bundle, load_texts(files))
    text = render_text(result)
    assert f"- package payments-entry ({POLICIES}/payments-entry.yaml)" in text
    assert "      lifetime: {duration: P180D, max: P365D, requested: any}" in text
    assert "    incompatibleWith: [payments-entry] -> (none)" in text
    markdown = render_markdown(result)
    assert "| removed | incompatibleWith | `[payments-entry]` |  |" in markdown
    assert "lifetime: `{duration: P180D, max: P365D, requested: any}`" in markdown


def test_a_field_dropped_from_a_changed_rule_reads_as_none():
    """A reason removed from a kept rule: `reason: text -> (none)`."""
    old = BASE.replace(
        "then: {decision: auto_approve}\n    - id: second",
        "then: {decision: auto_approve, reason: Sales}\n    - id: second",
    )
    result = diff_of({"p.yaml": old}, {"p.yaml": BASE})
    assert "  ~ rule first (line 10)\n      reason: Sales -> (none)" in render_text(result)
    assert "reason: `Sales` | reason: (none) |" in render_markdown(result)


def test_every_documented_rule_feature_renders_in_every_format():
    """All docs/rules.md examples (every condition, lifetime and approval form), added to an
    empty bundle and removed again, print as text, Markdown and JSON."""
    import json

    from tests.test_docs import examples, is_rule_file

    documented = load_texts(
        {f"e{i}.yaml": block for i, block in enumerate(examples()) if is_rule_file(block)}
    )
    empty = load_texts({"q.yaml": OTHER})
    for old, new in ((empty, documented), (documented, empty)):
        result = diff_bundles(old, new)
        assert len(result.packages) >= 5
        assert render_text(result) and render_markdown(result)
        assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


def test_incompatible_groups_show_as_the_field_in_any_order():
    """incompatibleGroups added is one field change (no derived rule); reordered, no change."""
    old = BASE.replace(
        "  lifetime: {duration: P30D}\n",
        "  lifetime: {duration: P30D}\n  incompatibleGroups: [Payments.Clerks, Auditors]\n",
    )
    new = old.replace("[Payments.Clerks, Auditors]", "[Auditors, Payments.Clerks]")
    assert not diff_of({"p.yaml": old}, {"p.yaml": new}).effective
    (package,) = diff_of({"p.yaml": BASE}, {"p.yaml": old}).packages
    assert package.rules == ()
    assert [(f.field, f.before, f.after) for f in package.fields] == [
        ("incompatibleGroups", None, ["Auditors", "Payments.Clerks"])
    ]


def test_a_lifetime_made_permanent_is_one_field_change():
    """`lifetime: {permanent: true}` instead of 30 days reads as that lifetime before and after."""
    new = BASE.replace("lifetime: {duration: P30D}", "lifetime: {permanent: true}")
    (package,) = diff_of({"p.yaml": BASE}, {"p.yaml": new}).packages
    assert [(f.field, f.before, f.after) for f in package.fields] == [
        ("lifetime", {"duration": "P30D"}, {"permanent": True})
    ]
