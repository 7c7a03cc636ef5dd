"""The layering of src/policyd holds: imports point one way, and no module cycle is new.

`api`, `cli`, `worker` → `services` → `rules`, `store`, `connectors` → `domain`; only
`services`, `store` and the composition root (`compose`) import `store`. Lazy imports inside
functions count too: they hide a dependency, they do not remove it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

SRC = ROOT / "src" / "policyd"

# What each part of the package may import (besides itself).
MAY_IMPORT: dict[str, set[str]] = {
    "domain": set(),
    # Pooled random bytes for ids: request ids (logs) and row ids (store).
    "randomness": set(),
    "logs": {"randomness"},
    # The cyclic garbage collector: paused around bulk work (bundle loads, reconcile pages),
    # a server's start-up heap frozen out of its sight.
    "collector": set(),
    "rules": {"domain", "collector"},
    "store": {"domain", "randomness"},
    "settings": {"rules", "logs", "setting_values"},
    # The value parsers of settings.py: what a setting's text may be.
    "setting_values": {"rules"},
    # The periodic-task registry and scheduler: framework-free, declared into by services.
    "periodic": {"logs"},
    "plugins": {"settings"},
    "connectors": {"domain", "rules", "plugins"},
    # Notifiers share the connectors file and the webhook connector's signed sender.
    "notify": {"domain", "plugins", "connectors"},
    "services": {
        "domain",
        "rules",
        "store",
        "connectors",
        "notify",
        "logs",
        "periodic",
        "collector",
    },
    "worker": {"domain", "rules", "services", "connectors", "notify", "logs", "periodic"},
    "api": {"domain", "rules", "services", "settings", "compose", "logs", "collector"},
    "cli": {
        "domain",
        "rules",
        "services",
        "settings",
        "compose",
        "logs",
        "api",
        "periodic",
        "collector",
    },
    "testing": {"domain", "connectors"},
    "compose": {
        "domain",
        "rules",
        "store",
        "settings",
        "connectors",
        "notify",
        "services",
        "worker",
        "logs",
        "periodic",
    },
    "policyd": set(),
}

# Imports that break the layering today, each to be removed by the architecture work; the
# test fails on any import not allowed above and not listed here, and on a listed one that
# is gone (so the list only shrinks).
KNOWN: set[tuple[str, str]] = set()

# Module cycles that exist today (same rule: none may be added, a fixed one leaves the list).
KNOWN_CYCLES: list[list[str]] = []


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The policyd modules `name` imports, at any depth, outside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {target for target in found if target in known and target != name}


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "policyd"


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_part_of_the_package_has_a_layer():
    """A new top-level module or subpackage must be placed in MAY_IMPORT."""
    assert {part(name) for name in modules()} <= set(MAY_IMPORT)


def test_imports_follow_the_layers():
    """No import crosses the layers, besides the known ones still to be removed."""
    crossing = {
        (source, target)
        for source, targets in graph().items()
        for target in targets
        if part(source) != part(target) and part(target) not in MAY_IMPORT[part(source)]
    }
    assert crossing - KNOWN == set(), "new imports against the layering"
    assert KNOWN - crossing == set(), "fixed: remove these from KNOWN"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_new_import_cycle():
    """Modules import each other in one direction only, besides the known cycles."""
    assert cycles(graph()) == sorted(KNOWN_CYCLES)


def test_the_cycle_finder_finds_a_cycle():
    """The check itself sees a cycle of three modules and none in a chain."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_only_services_and_the_store_commit():
    """No view, command, worker or connector ends a transaction: `.commit()` is called only in
    `services` (which own every write and its audit record) and `store`."""
    committers = []
    for path in sorted(SRC.rglob("*.py")):
        part = path.relative_to(SRC).parts[0]
        if part in ("services", "store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "commit"
            ):
                committers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert committers == []


# `app.extensions["policyd.<name>"]` or `.get("policyd.<name>")`: a shared object found by a string.
_STRING_KEYED = re.compile(r"""extensions\s*(?:\[|\.get\(|\.setdefault\()\s*["']policyd\.""")


def test_shared_objects_are_read_through_one_typed_accessor():
    """The app's shared objects live in one `Components` value (api/components.py), read with
    `policyd.api.context.components()`; no module, test or benchmark looks one up by a
    string key."""
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in (SRC, ROOT / "tests", ROOT / "bench")
        for path in sorted(folder.rglob("*.py"))
        if path != Path(__file__)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _STRING_KEYED.search(line)
    ]
    assert found == []
