"""Semantic diff at scale: two bundles of template shape (the hand-written examples plus a
template of N scopes, as bench/scale.py writes them), where the candidate shortens the
generated readers packages from 8 to 4 hours and adds one scope. Prints the time to load each
side, to compare them, and to render text, Markdown and JSON, as wall-clock and CPU seconds
(on a shared machine the CPU time is the steadier figure).

    python bench/diff.py                 # 5,000 scopes: 10,000 generated packages a side
    python bench/diff.py --scopes 1000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import write_bundle  # the bench folder is not a package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scopes", type=int, default=5000)
    args = parser.parse_args()

    from policyd.rules import load_bundle
    from policyd.rules.diff import diff_bundles
    from policyd.rules.diff_text import render_markdown, render_text

    with tempfile.TemporaryDirectory() as folder:
        old, new = Path(folder, "old"), Path(folder, "new")
        scopes = write_bundle(old, 2 * args.scopes + 5)
        write_bundle(new, 2 * args.scopes + 5)
        template = (new / "scopes.yaml").read_text()
        (new / "scopes.yaml").write_text(
            template.replace("duration: PT8H, max: PT8H", "duration: PT4H, max: PT4H")
        )
        with (new / "scopes.csv").open("a") as rows:
            rows.write("ScopeNew\n")
        timings: dict[str, tuple[float, float]] = {}

        def timed(name, work):
            wall, cpu = time.perf_counter(), time.process_time()
            value = work()
            timings[name] = (time.perf_counter() - wall, time.process_time() - cpu)
            return value

        before = timed("load old", lambda: load_bundle(old))
        after = timed("load new", lambda: load_bundle(new))
        result = timed("diff", lambda: diff_bundles(before, after))
        timed("text", lambda: render_text(result))
        timed("markdown", lambda: render_markdown(result))
        timed("json", lambda: json.dumps(result.to_dict()))
    summary = result.summary()
    assert summary["packages"] == {"added": 2, "removed": 0, "changed": scopes}, summary
    print(f"{len(before.packages):,} packages -> {len(after.packages):,}: {summary['packages']}")
    print(f"{'step':<9} {'wall s':>7} {'cpu s':>7}")
    for name, (wall, cpu) in timings.items():
        print(f"{name:<9} {wall:7.2f} {cpu:7.2f}")


if __name__ == "__main__":
    main()
