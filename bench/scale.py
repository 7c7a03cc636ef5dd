"""Bundle scale: load (parse + validate), compile, peak memory and version switch for bundles of
many packages, each size measured in a fresh process and printed as one table.

    python bench/scale.py                      # 1,000 and 10,000 packages
    python bench/scale.py --sizes 1000,10000,100000

Packages have a realistic shape: a template whose CSV rows each make, per scope, a
just-in-time readers package of four rules (deny terminated accounts, auto-approve the
eligible group, approval by the scope's approvers for members, deny guests) plus the package
that grants the eligibility, and the example policies written by hand beside it. A row also
times publishing the bundle as a version (validate and store, SQLite). Targets (issue "Scale"):
a 10,000-rule bundle loads in <= 2 s, 100,000 packages in <= 30 s, and a process holding a
10,000-package version stays <= 250 MB RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"

TEMPLATE = """apiVersion: policyd/v1
template:
  id: scope-readers
  parameters: [scope]
  rowsFrom: scopes.csv
  packages:
    - id: "${scope|slug}-readers"
      displayName: "${scope} readers (just in time)"
      owners: ["group:Group.${scope}.Approvers"]
      resources:
        - {connector: directory, resource: "group:Group.${scope}.Readers", role: member}
      lifetime: {duration: PT8H, max: PT8H, requested: shorter}
      rules:
        - id: terminated
          when: {subject.employeeType: terminated}
          then: {decision: deny, reason: Terminated accounts cannot request access}
        - id: eligible-members
          priority: 100
          when: {subject.groups: {contains: "Group.${scope}.Readers.Eligible"}}
          then: {decision: auto_approve, reason: Eligible members are approved automatically}
        - id: members
          when: {subject.type: member}
          then:
            decision: require_approval
            approval:
              stages: [{approvers: ["group:Group.${scope}.Approvers"], timeout: PT4H}]
        - id: guests
          when: {subject.type: guest}
          then: {decision: deny, reason: "Guests cannot read ${scope}"}
    - id: "${scope|slug}-eligibility"
      displayName: "${scope} readers eligibility"
      resources:
        - {connector: directory, resource: "group:Group.${scope}.Readers.Eligible"}
      lifetime: {duration: P90D}
      rules:
        - id: approvers-decide
          when: {subject.type: member}
          then:
            decision: require_approval
            approval:
              stages: [{approvers: ["group:Group.${scope}.Approvers"], timeout: P3D}]
"""


def write_bundle(folder: Path, packages: int) -> int:
    """About `packages` packages in `folder`: the hand-written examples, and a template whose
    CSV rows each make a readers and an eligibility package; returns the number of scopes."""
    shutil.copytree(POLICIES, folder, ignore=shutil.ignore_patterns("tests"))
    examples = len(list(folder.glob("*.yaml")))
    scopes = max(1, (packages - examples) // 2)
    (folder / "scopes.yaml").write_text(TEMPLATE, encoding="utf-8")
    rows = "".join(f"Scope{n}\n" for n in range(scopes))
    (folder / "scopes.csv").write_text("scope\n" + rows, encoding="utf-8")
    return scopes


def measure(folder: str) -> dict[str, float]:
    """In this (fresh) process: load, compile, then switch to a second compiled copy."""
    from policyd.domain import RequestOptions, Subject
    from policyd.rules import PolicyRuntime, load_bundle

    started = time.perf_counter()
    bundle = load_bundle(folder)
    loaded = time.perf_counter()
    runtime = PolicyRuntime(bundle)
    compiled = time.perf_counter()
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    subject = Subject(id="ada", groups=frozenset({"Group.Scope0.Readers.Eligible"}))
    first = time.perf_counter()
    decision = runtime.active.decide("scope0-readers", subject, RequestOptions(), now=now)
    decided = time.perf_counter()
    assert decision.rule == "eligible-members", decision
    switch_started = time.perf_counter()
    runtime.activate(bundle)  # a version switch: compile the new version, then swap
    switched = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    runtime.close()
    published = publish(bundle)
    return {
        "packages": len(bundle.packages),
        "rules": bundle.rule_count,
        "load_s": loaded - started,
        "compile_s": compiled - loaded,
        "first_decision_ms": (decided - first) * 1000,
        "switch_s": switched - switch_started,
        "peak_rss_mb": rss,
        "publish_s": published,
    }


def publish(bundle) -> float:
    """Seconds to publish `bundle`'s files as a version into a new SQLite database."""
    from policyd.services.actor import SYSTEM
    from policyd.services.versions import VersionService
    from policyd.store import Database

    with tempfile.TemporaryDirectory() as folder:
        database = Database(f"sqlite:///{folder}/scale.db")
        database.upgrade()
        started = time.perf_counter()
        with database.session() as session:
            VersionService(session).publish(
                SYSTEM, bundle.files, message="scale", now=datetime.now(UTC)
            )
        spent = time.perf_counter() - started
        database.dispose()
    return spent


def row(size: int, work: Path) -> dict[str, float]:
    folder = work / f"bundle-{size}"
    write_bundle(folder, size)
    child = subprocess.run(
        [sys.executable, __file__, "--measure", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"measuring {size} packages failed:\n{child.stderr}")
    shutil.rmtree(folder)
    return json.loads(child.stdout.splitlines()[-1])


def verdicts(result: dict[str, float]) -> str:
    checks = []
    if result["rules"] >= 10_000 and result["packages"] < 20_000:
        checks.append(("load <= 2 s", result["load_s"] + result["compile_s"] <= 2))
        checks.append(("RSS <= 250 MB", result["peak_rss_mb"] <= 250))
    if result["packages"] >= 100_000:
        checks.append(("load <= 30 s", result["load_s"] + result["compile_s"] <= 30))
    return ", ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in checks) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="packages per bundle, comma list")
    parser.add_argument("--measure", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes whole numbers, e.g. 1000,10000")
    if not sizes or min(sizes) < 10:
        parser.error("--sizes: each bundle needs at least 10 packages")
    header = (
        "packages",
        "rules",
        "load s",
        "compile s",
        "1st decision ms",
        "switch s",
        "publish s",
        "peak RSS MB",
        "targets",
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="policyd-scale-") as work:
        for size in sizes:
            result = row(size, Path(work))
            rows.append(
                (
                    f"{result['packages']:,}",
                    f"{result['rules']:,}",
                    f"{result['load_s']:.2f}",
                    f"{result['compile_s']:.2f}",
                    f"{result['first_decision_ms']:.1f}",
                    f"{result['switch_s']:.2f}",
                    f"{result['publish_s']:.2f}",
                    f"{result['peak_rss_mb']:.0f}",
                    verdicts(result),
                )
            )
            print(f"measured {size:,} packages", file=sys.stderr)
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for n, line in enumerate([header, *rows]):
        print(
            "  ".join(
                cell.rjust(w) if c < 8 else cell
                for c, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
