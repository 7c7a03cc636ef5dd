"""Commands for policy authors: check, test, bundle-id (eval has its own module)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from policyd.cli.base import (
    _fail,
    _load,
    main,
    policies_argument,
)
from policyd.rules import (
    Policy,
    ProblemsError,
    load_bundle,
)
from policyd.rules.junit import junit_xml
from policyd.rules.policytest import coverage, load_cases, run_cases
from policyd.rules.source import Problem


@main.command()
@policies_argument
@click.option(
    "--connectors",
    "connectors_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also check every resource against these connector instances, as publishing does.",
)
def check(directory: Path, connectors_file: Path | None) -> None:
    """Validate every rule file and test case; print all errors as file:line."""
    problems: list[Problem] = []
    try:
        bundle = load_bundle(directory)
    except ProblemsError as err:
        _fail(err.problems)
    try:
        cases = load_cases(directory, bundle)
    except ProblemsError as err:
        problems.extend(err.problems)
    if connectors_file is not None:
        from policyd.compose import check_connectors_file

        try:
            check_connectors_file(bundle, connectors_file)
        except ProblemsError as err:
            problems.extend(err.problems)
    if problems:
        _fail(problems)
    click.echo(
        f"ok: {len(bundle.packages)} packages, {bundle.rule_count} rules, "
        f"{len(cases)} test cases; version {bundle.version.id}"
    )


@main.command("test")
@policies_argument
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 100),
    default=0,
    show_default=True,
    help="Fail when fewer than this percentage of rules is matched by some case.",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "junit"]),
    default="text",
    show_default=True,
    help="junit: JUnit XML on stdout for CI systems (one testcase per case, and coverage).",
)
def test_command(directory: Path, min_coverage: float, output: str) -> None:
    """Run the policy test cases in DIRECTORY/tests through the real engine."""
    bundle = _load(directory)
    try:
        cases = load_cases(directory, bundle)
    except ProblemsError as err:
        _fail(err.problems)
    policy = Policy(bundle)
    try:
        results = run_cases(policy, cases)
    finally:
        policy.close()
    if output == "junit":
        report = coverage(bundle, results)
        click.echo(junit_xml(results, report, min_coverage), nl=False)
        if any(not r.passed for r in results) or report.percent < min_coverage:
            sys.exit(1)
        return
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        origin = result.decision.template
        made = f"  [{origin[0]} template, row {origin[1]}]" if origin and not result.passed else ""
        click.echo(f"{status} {result.case.where} {result.case.name}{made}")
        for failure in result.failures:
            click.echo(f"     {failure}")
    failed = sum(not r.passed for r in results)
    click.echo(f"policy tests: {len(results) - failed} passed, {failed} failed")
    report = coverage(bundle, results)
    covered = len(report.total) - len(report.missing)
    click.echo(
        f"coverage: {covered}/{len(report.total)} rules matched by a case ({report.percent:.1f}%)"
    )
    for package, rule, where in report.missing:
        click.echo(f"  not matched: {package}/{rule} ({where})")
    if failed:
        sys.exit(1)
    if report.percent < min_coverage:
        click.echo(f"coverage {report.percent:.1f}% is below --min-coverage {min_coverage:g}%")
        sys.exit(1)


@main.command("bundle-id")
@policies_argument
@click.option("--json", "as_json", is_flag=True)
def bundle_id(directory: Path, as_json: bool) -> None:
    """Print the id a publication of DIRECTORY would get: a hash of the parsed rules (blind to
    whitespace, key order and comments), with the git commit they are at."""
    bundle = _load(directory)
    v = bundle.version
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": v.id,
                    "content_hash": v.content_hash,
                    "git_commit": v.git_commit,
                    "git_dirty": v.git_dirty,
                }
            )
        )
        return
    git = "not in a git work tree"
    if v.git_commit:
        git = f"git {v.git_commit}" + (" (uncommitted changes)" if v.git_dirty else "")
    click.echo(f"{v.id}  sha256:{v.content_hash}  {git}")


@main.command(hidden=True)
@policies_argument
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def version(ctx: click.Context, directory: Path, as_json: bool) -> None:
    """Deprecated: the old name of `policyd bundle-id`."""
    click.echo(
        "policyd version is deprecated: use `policyd bundle-id` (published versions: "
        "`policyd versions list`)",
        err=True,
    )
    ctx.invoke(bundle_id, directory=directory, as_json=as_json)
