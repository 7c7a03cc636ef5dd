"""Policy test results as JUnit XML, the report format CI systems read."""

from __future__ import annotations

from xml.etree import ElementTree

from policyd.rules.policytest import CaseResult, Coverage


def junit_xml(results: list[CaseResult], report: Coverage, min_coverage: float = 0) -> str:
    """One testsuite per test file, one testcase per case (a failure carries every mismatch),
    and a `coverage` testcase that fails when fewer rules than `min_coverage` % were matched."""
    root = ElementTree.Element("testsuites", name="policyd test")
    suites: dict[str, list[CaseResult]] = {}
    for result in results:
        suites.setdefault(result.case.file, []).append(result)
    for file, members in suites.items():
        failed = sum(not r.passed for r in members)
        suite = _suite(root, file, len(members), failed)
        for result in members:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                name=result.case.name,
                classname=result.case.package,
                file=result.case.file,
                line=str(result.case.line),
            )
            if result.failures:
                failure = ElementTree.SubElement(
                    case, "failure", message=result.failures[0], type="PolicyTestFailure"
                )
                failure.text = "\n".join([f"{result.case.where}", *result.failures])
    covered = len(report.total) - len(report.missing)
    below = report.percent < min_coverage
    suite = _suite(root, "coverage", 1, int(below))
    case = ElementTree.SubElement(
        suite, "testcase", name=f"coverage >= {min_coverage:g}%", classname="coverage"
    )
    detail = [f"{package}/{rule} ({where})" for package, rule, where in report.missing]
    message = f"{covered}/{len(report.total)} rules matched by a case ({report.percent:.1f}%)"
    if below:
        failure = ElementTree.SubElement(case, "failure", message=message, type="Coverage")
        failure.text = "\n".join(["not matched:", *detail])
    else:
        ElementTree.SubElement(case, "system-out").text = "\n".join([message, *detail])
    root.set("tests", str(len(results) + 1))
    root.set("failures", str(sum(not r.passed for r in results) + int(below)))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(root: ElementTree.Element, name: str, tests: int, failures: int):
    return ElementTree.SubElement(
        root, "testsuite", name=name, tests=str(tests), failures=str(failures), errors="0"
    )
