"""Catalog files: catalogs with owners, packages that join them, and their file:line problems."""

from __future__ import annotations

import pytest

from policyd.rules import ProblemsError, load_bundle, load_texts
from policyd.rules.packed import pack_bundle, unpack_bundle
from policyd.rules.review import find_scope, review_scopes
from tests.conftest import POLICIES, rule_file

CATALOGS = """
apiVersion: policyd/v1
catalogs:
  - id: finance
    displayName: Finance
    description: Ledger and payments.
    owners: ["group:Finance.Controllers", "user:fiona"]
  - id: sales
    displayName: Sales
"""


def package(catalog: str | None = "finance", managers: str = "") -> str:
    lines = [
        "apiVersion: policyd/v1",
        "package:",
        "  id: ledger",
        "  displayName: Ledger",
        f"  catalog: {catalog}" if catalog else "",
        f"  managers: [{managers}]" if managers else "",
        "  lifetime: {duration: P1D}",
        "  rules:",
        "    - {id: everyone, then: {decision: auto_approve}}",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def problems_of(texts: dict[str, str]) -> list[str]:
    with pytest.raises(ProblemsError) as caught:
        load_texts({name: rule_file(text) for name, text in texts.items()})
    return [str(p) for p in caught.value.problems]


def test_a_catalog_file_declares_catalogs_with_owners():
    """Each catalog keeps its id, display name, description, owners, file and line."""
    bundle = load_texts({"catalogs.yaml": rule_file(CATALOGS), "ledger.yaml": package()})
    finance = bundle.catalogs["finance"]
    assert (finance.display_name, finance.description) == ("Finance", "Ledger and payments.")
    assert finance.owners == ("group:Finance.Controllers", "user:fiona")
    assert (finance.file, finance.line) == ("catalogs.yaml", 3)
    assert bundle.catalogs["sales"].owners == ()
    assert bundle.packages["ledger"].catalog == "finance"


def test_a_package_declares_its_managers():
    """`managers` keeps user and group references in order."""
    text = package(managers='"user:hank", "group:Ledger.Admins"')
    bundle = load_texts({"catalogs.yaml": rule_file(CATALOGS), "ledger.yaml": text})
    assert bundle.packages["ledger"].managers == ("user:hank", "group:Ledger.Admins")


def test_a_package_naming_an_undeclared_catalog_is_a_problem_at_its_line():
    """The problem names the key, the unknown catalog and the declared ones."""
    found = problems_of({"catalogs.yaml": CATALOGS, "ledger.yaml": package("treasury")})
    assert found == [
        "ledger.yaml:5: package.catalog: unknown catalog 'treasury' (catalogs: finance, sales)"
    ]


def test_a_catalog_without_any_catalog_file_is_a_problem():
    """With no catalog file at all, any package's catalog is unknown."""
    found = problems_of({"ledger.yaml": package("finance")})
    assert found == [
        "ledger.yaml:5: package.catalog: unknown catalog 'finance' (catalogs: none declared)"
    ]


def test_a_catalog_declared_twice_is_a_problem_at_the_second():
    """Catalog ids are unique across files; the second names the first's place."""
    again = "apiVersion: policyd/v1\ncatalogs:\n  - {id: finance, displayName: Again}\n"
    found = problems_of({"a.yaml": CATALOGS, "b.yaml": again, "ledger.yaml": package()})
    assert found == ["b.yaml:3: catalogs.id: duplicate catalog id 'finance' (also in a.yaml:3)"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            "{id: Finance!, displayName: F}",
            "c.yaml:3: catalogs[0].id: 'Finance!' is not a valid id",
        ),
        ("{id: finance}", "c.yaml:3: catalogs[0].displayName: required key is missing"),
        (
            '{id: finance, displayName: F, owners: ["finance"]}',
            "c.yaml:3: catalogs[0].owners[0]: unknown approver kind 'finance'",
        ),
        ("{id: finance, displayName: F, owner: x}", "c.yaml:3: catalogs[0].owner: unknown key"),
    ],
)
def test_a_bad_catalog_is_a_problem_naming_its_key(entry, expected):
    """Id, display name, owners and unknown keys are checked like a package's."""
    text = f"apiVersion: policyd/v1\ncatalogs:\n  - {entry}\n"
    (found,) = problems_of({"c.yaml": text, "ledger.yaml": package(None)})
    assert found.startswith(expected)


def test_a_bad_manager_is_a_problem_at_its_line():
    """A manager is a user:<id> or group:<id> reference."""
    found = problems_of({"catalogs.yaml": CATALOGS, "ledger.yaml": package(managers="bob")})
    assert found[0].startswith("ledger.yaml:6: package.managers[0]: unknown approver kind 'bob'")


def test_the_example_policies_put_every_package_in_a_declared_catalog():
    """Each shipped package names a catalog that policies/catalogs.yaml declares."""
    bundle = load_bundle(POLICIES)
    assert {p.catalog for p in bundle.packages.values()} <= set(bundle.catalogs)
    assert bundle.catalogs["finance"].owners == ("group:Finance.Controllers",)


def test_catalogs_are_part_of_the_version():
    """Changing a catalog's owners changes the bundle version."""
    first = load_texts({"catalogs.yaml": CATALOGS, "ledger.yaml": package()})
    changed = CATALOGS.replace('"user:fiona"', '"user:frank"')
    second = load_texts({"catalogs.yaml": changed, "ledger.yaml": package()})
    assert first.version.id != second.version.id


def test_each_catalog_lists_its_packages_and_the_bundle_its_managed_packages():
    """The loader indexes catalog membership and managers, so nothing needs every package."""
    text = package(managers='"user:hank"')
    bundle = load_texts({"catalogs.yaml": rule_file(CATALOGS), "ledger.yaml": text})
    assert bundle.catalogs["finance"].packages == ("ledger",)
    assert bundle.catalogs["sales"].packages == ()
    assert bundle.managed == {"ledger": ("user:hank",)}


def test_the_packed_form_carries_catalogs_and_managers():
    """A packed bundle unpacks to the same catalogs, index of managers and package managers."""
    text = package(managers='"user:hank"')
    bundle = load_texts({"catalogs.yaml": rule_file(CATALOGS), "ledger.yaml": text})
    unpacked = unpack_bundle(pack_bundle(bundle))
    assert unpacked.catalogs == bundle.catalogs
    assert unpacked.managed == bundle.managed
    assert unpacked.packages.decoded == 0
    assert unpacked.packages["ledger"] == bundle.packages["ledger"]


REVIEWED = """
apiVersion: policyd/v1
catalogs:
  - id: finance
    displayName: Finance
    owners: ["user:fiona"]
    reviews:
      - id: quarterly
        schedule: {cron: "0 0 1 1,4,7,10 *"}
        duration: P14D
        reviewers: [owners]
        onNoResponse: remove
  - id: sales
    displayName: Sales
"""


def reviewed_package(pid: str, catalog: str, review: bool) -> str:
    own = (
        "  reviews:\n    - {id: own, schedule: {cron: '0 0 1 * *'}, duration: P7D, "
        'reviewers: ["user:olga"]}\n'
    )
    return package(catalog).replace("ledger", pid).replace("Ledger", pid) + (own if review else "")


def test_a_catalog_s_review_covers_its_packages_without_their_own():
    """ledger has no review: the catalog's covers it; audit has its own, which wins."""
    bundle = load_texts(
        {
            "catalogs.yaml": rule_file(REVIEWED),
            "ledger.yaml": reviewed_package("ledger", "finance", review=False),
            "audit.yaml": reviewed_package("audit", "finance", review=True),
        }
    )
    scopes = {(s.id, s.review.id): (s.packages, s.owners) for s in review_scopes(bundle)}
    assert scopes == {
        ("audit", "own"): (("audit",), ()),
        ("catalog:finance", "quarterly"): (("ledger",), ("user:fiona",)),
    }
    assert find_scope(bundle, "catalog:finance", "quarterly").packages == ("ledger",)
    assert find_scope(bundle, "catalog:sales", "quarterly") is None


def test_the_packed_form_carries_a_catalog_s_reviews():
    bundle = load_texts({"catalogs.yaml": rule_file(REVIEWED), "ledger.yaml": package()})
    unpacked = unpack_bundle(pack_bundle(bundle))
    assert unpacked.catalogs["finance"].reviews == bundle.catalogs["finance"].reviews
    assert review_scopes(unpacked) == review_scopes(bundle)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("duration: P14D", "duration: P120D"),
            "catalogs.yaml:9: catalogs[0].reviews[0].duration: campaigns would overlap",
        ),
        (
            ('    owners: ["user:fiona"]\n', ""),
            "catalogs.yaml:5: catalogs[0].reviews: reviewer 'owners' needs the catalog's owners",
        ),
        (
            ("reviewers: [owners]", "reviewers: [boss]"),
            "catalogs.yaml:10: catalogs[0].reviews[0].reviewers[0]: unknown reviewer kind 'boss'",
        ),
    ],
)
def test_a_bad_catalog_review_is_a_problem_at_its_line(change, expected):
    """A catalog's review is checked like a package's, with file:line."""
    text = REVIEWED.replace(*change)
    found = problems_of({"catalogs.yaml": text, "ledger.yaml": package(None)})
    assert len(found) == 1 and found[0].startswith(expected), found
