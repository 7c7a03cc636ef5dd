"""`policyd test --format junit`: JUnit XML with one testcase per policy test case."""

from __future__ import annotations

import shutil
from xml.etree import ElementTree

from policyd.cli import main
from tests.conftest import POLICIES


def junit(runner, *args: str):
    result = runner.invoke(main, ["test", *args, "--format", "junit"])
    return result, ElementTree.fromstring(result.stdout)


def test_every_case_is_a_testcase_in_a_suite_per_file(runner, example_bundle):
    """16 cases in 4 files plus the coverage check: 17 testcases, none failing, exit 0."""
    result, root = junit(runner, str(POLICIES), "--min-coverage", "100")
    assert result.exit_code == 0, result.output
    assert (root.get("tests"), root.get("failures")) == ("17", "0")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites][-1] == "coverage"
    assert len(suites) == 5 and len(root.findall(".//testcase")) == 17
    case = root.find(".//testcase[@classname='scope-a-readers']")
    assert case.get("name") == "an eligible member is approved automatically for eight hours"
    assert case.get("file").endswith("tests/scope-a-readers.yaml") and case.get("line") == "3"


def test_a_failing_case_carries_its_mismatch_and_exits_one(runner, tmp_path):
    """A wrong expectation is a <failure> with the message; the command exits 1."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    cases = policies / "tests" / "scope-a-readers.yaml"
    cases.write_text(cases.read_text().replace("rule: eligible-members", "rule: everyone-else"))
    result, root = junit(runner, str(policies))
    assert result.exit_code == 1
    (failure,) = root.findall(".//failure")
    assert "everyone-else" in failure.get("message")
    assert failure.text.startswith(f"{policies}/tests/scope-a-readers.yaml:3")


def test_coverage_below_the_floor_is_a_failing_testcase(runner, tmp_path):
    """Without the case that matches a rule, the coverage testcase fails naming that rule."""
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    cases = policies / "tests" / "sales-support.yaml"
    text = cases.read_text()
    cases.write_text(text[: text.index("  - name: a guest cannot request")])
    result, root = junit(runner, str(policies), "--min-coverage", "100")
    assert result.exit_code == 1
    (failure,) = root.findall(".//testcase[@classname='coverage']/failure")
    assert failure.get("message").startswith("10/11 rules matched by a case")
    assert "sales-support/guests-cannot-request" in failure.text
