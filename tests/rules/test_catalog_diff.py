"""The semantic diff shows catalogs: added and removed, their owners and reviews changed, and
packages moved between them."""

from __future__ import annotations

from policyd.rules import load_texts
from policyd.rules.diff import diff_bundles
from policyd.rules.diff_text import render_markdown, render_text
from tests.conftest import rule_file

CATALOGS = rule_file(
    """
    apiVersion: policyd/v1
    catalogs:
      - id: finance
        displayName: Finance
        owners: ["user:fiona", "group:Finance.Controllers"]
      - id: sales
        displayName: Sales
    """
)
REVIEW = """\
    reviews:
      - {id: yearly, schedule: "0 0 1 1 *", duration: P14D, reviewers: [owners]}
"""


def package(catalog: str) -> str:
    return rule_file(
        f"""
        apiVersion: policyd/v1
        package:
          id: ledger
          displayName: Ledger
          catalog: {catalog}
          lifetime: {{duration: P1D}}
          rules:
            - {{id: everyone, then: {{decision: auto_approve}}}}
        """
    )


def diff(old_catalogs: str, new_catalogs: str, old_in: str = "finance", new_in: str = "finance"):
    old = load_texts({"catalogs.yaml": old_catalogs, "ledger.yaml": package(old_in)})
    new = load_texts({"catalogs.yaml": new_catalogs, "ledger.yaml": package(new_in)})
    return diff_bundles(old, new)


def test_the_same_catalogs_in_another_order_are_no_change():
    """Owners are order-free, like a package's."""
    reordered = CATALOGS.replace(
        '["user:fiona", "group:Finance.Controllers"]', '["group:Finance.Controllers", "user:fiona"]'
    )
    result = diff(CATALOGS, reordered)
    assert (result.effective, result.catalogs) == (False, ())


def test_a_catalog_added_and_one_removed_are_listed_whole():
    new = CATALOGS.replace("  - id: sales\n    displayName: Sales\n", "") + (
        '  - id: legal\n    displayName: Legal\n    owners: ["user:lee"]\n'
    )
    result = diff(CATALOGS, new)
    found = {
        c.id: (c.change, {f.field: (f.before, f.after) for f in c.fields}) for c in result.catalogs
    }
    assert found == {
        "legal": ("added", {"displayName": (None, "Legal"), "owners": (None, ["user:lee"])}),
        "sales": ("removed", {"displayName": ("Sales", None)}),
    }
    assert result.summary()["catalogs"] == {"added": 1, "removed": 1, "changed": 0}


def test_changed_owners_and_a_new_review_are_field_changes():
    new = CATALOGS.replace('"user:fiona", ', "").replace(
        '    owners: ["group', REVIEW + '    owners: ["group'
    )
    (finance,) = diff(CATALOGS, new).catalogs
    assert (finance.id, finance.change, finance.file) == ("finance", "changed", "catalogs.yaml")
    changes = {f.field: (f.before, f.after) for f in finance.fields}
    assert changes["owners"] == (
        ["group:Finance.Controllers", "user:fiona"],
        ["group:Finance.Controllers"],
    )
    before, after = changes["reviews"]
    assert before is None and after[0]["id"] == "yearly" and after[0]["reviewers"] == ["owners"]


def test_a_package_moved_between_catalogs_leaves_one_and_joins_the_other():
    """The catalogs show the move, the package its `catalog` field; text and Markdown too."""
    result = diff(CATALOGS, CATALOGS, old_in="finance", new_in="sales")
    moves = {c.id: (c.change, c.joined, c.left, c.fields) for c in result.catalogs}
    assert moves == {
        "finance": ("changed", (), ("ledger",), ()),
        "sales": ("changed", ("ledger",), (), ()),
    }
    (ledger,) = result.packages
    assert [(f.field, f.before, f.after) for f in ledger.fields] == [
        ("catalog", "finance", "sales")
    ]
    text = render_text(result)
    assert "~ catalog finance (catalogs.yaml)\n  - package ledger\n" in text
    assert "~ catalog sales (catalogs.yaml)\n  + package ledger\n" in text
    assert text.endswith("1 package changed, 1 field changed, 2 catalogs changed")
    markdown = render_markdown(result)
    assert "#### ~ catalog `sales` (catalogs.yaml): changed" in markdown
    assert "| joined | package `ledger` | | |" in markdown
    assert result.to_dict()["catalogs"][0] == {
        "id": "finance",
        "change": "changed",
        "file": "catalogs.yaml",
        "fields": [],
        "joined": [],
        "left": ["ledger"],
    }
