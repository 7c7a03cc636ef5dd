"""Compile a Bundle's conditions into durable_rules JSON rulesets, one per package.

durable_rules has no `not`, so negation is pushed down to the comparisons (De Morgan). Its
comparisons coerce types ("1" equals 1, true equals 1) and a `$neq` never matches a missing key,
so every compared value is text with a "v:" prefix, ordering uses separate numeric keys, and
missing keys are spelled out with `$nex`. See docs/engine.md.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from policyd.domain import Outcome
from policyd.rules.condition import All, AnyOf, Cmp, Condition, Kind, Not, field_kind, walk
from policyd.rules.model import Bundle, Rule
from policyd.rules.rule_question import with_asking
from policyd.rules.timing import Window

MARKER = "pd"  # present in every fact, so "always" can be written as a condition
# Every ruleset gets this always-true rule: a fact that matches nothing leaves durable_rules
# with a half-built session whose deletion corrupts memory.
ALWAYS_ACTION = "always"
TEXT_PREFIX = "v:"
TRUE = TEXT_PREFIX + "true"
FALSE = TEXT_PREFIX + "false"
ORDER = {"lt": ("$lt", "$gte"), "le": ("$lte", "$gt"), "gt": ("$gt", "$lte"), "ge": ("$gte", "$lt")}


def fact_key(name: str) -> str:
    """The flat fact key for a field (durable_rules reads dots as nesting)."""
    return name.replace(".", "__")


def number_key(name: str) -> str:
    return fact_key(name) + "__n"


def text_value(text: str) -> str:
    return TEXT_PREFIX + text


def number_value(number: float) -> int:
    """`number` as an integer in the same order, for the numeric keys and the rules' bounds.

    durable_rules' JSON reader takes an exponent only after a decimal point, so the JSON form
    of floats such as 1e16 or 1e-05 fails to parse (error 204). An IEEE double's bits read as
    a sign-magnitude integer order exactly like the numbers, and integers always parse.
    """
    bits = struct.unpack("<q", struct.pack("<d", number + 0.0))[0]  # + 0.0 turns -0.0 into 0.0
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class CompiledBundle:
    """The durable_rules definitions of one bundle version and how to read their results."""

    version: str
    rulesets: dict[str, dict[str, Any]]  # ruleset name -> durable_rules JSON
    ruleset_of: dict[str, tuple[str, ...]]  # package id -> its rulesets (chunks of rules)
    rule_of: dict[str, tuple[str, str]]  # action name -> (package id, rule id)
    windows: dict[Window, str] = field(default_factory=dict)  # cron window -> fact key
    fields: frozenset[str] = frozenset()  # every field some condition reads
    # package id -> rule id -> (place in the deciding order, place in the file); the deciding
    # order is deny first, then higher priority, then file order. A package whose rule ids
    # repeat has none (decisions then walk its rules).
    ranks: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    # list field -> named value -> the fact key present when the subject's list holds it
    members: dict[str, dict[str, str]] = field(default_factory=dict)


# durable_rules' limits (its C source: events.c MAX_STACK_SIZE, rete.c MAX_SEQUENCE_EXPRESSIONS,
# state.h MAX_OBJECT_PROPERTIES). Past them a decision fails at run time, so they are checked
# here, when a bundle is loaded, and large packages are split over several rulesets.
# Tests per ruleset. The match stack holds 64 entries, and each entry is a matching test or a
# $or's join pushed by a test already popped, so tests bound it (docs/engine.md, error 303).
ALPHA_BUDGET = 60
MAX_COMBINATORS = 15  # $and/$or per rule; 16 fail with error 113
MAX_FACT_KEYS = 200  # keys per fact; 255 fail with error 302 (sid, id and $s count too)
# durable_rules re-reads a list from the fact's JSON text for every $iany/$iall test, which
# made up a third of a decision's instructions on a package of 100 rules naming 40 groups.
# So a list field whose rules name few values gets one fact key per named value instead.
MEMBER_LIMIT = 64


class EngineLimitError(ValueError):
    """A bundle durable_rules cannot evaluate; `package` and `rule` say where, when known."""

    def __init__(self, message: str, package: str | None = None, rule: str | None = None):
        self.package = package
        self.rule = rule
        super().__init__(message)


def compile_bundle(bundle: Bundle, *, member_limit: int = MEMBER_LIMIT) -> CompiledBundle:
    """Translate every package's rules; the result is plain JSON-ready data.

    Args:
        member_limit: a list field whose rules name at most this many values is matched by
            one fact key per named value instead of by searching the list (0: never).

    Raises:
        EngineLimitError: a rule or the bundle exceeds what durable_rules can evaluate.
    """
    bundle = with_asking(bundle)  # which rules ask their questions (rules/rule_question.py)
    fields, windows, named = _read_fields(bundle)
    keys = _check_key_hashes(fields, windows)
    members = _member_keys(named, keys, member_limit)
    compiler = _Compiler(windows, members)
    rulesets: dict[str, dict[str, Any]] = {}
    ruleset_of: dict[str, tuple[str, ...]] = {}
    rule_of: dict[str, tuple[str, str]] = {}
    for index, package in enumerate(bundle.packages.values()):
        chunks: list[dict[str, Any]] = []
        budget = 0
        for number, rule in enumerate(package.rules):
            expr = _guarded(compiler.expr(rule.when, False))
            tests, combinators = _size(expr)
            if combinators > MAX_COMBINATORS or tests >= ALPHA_BUDGET:
                raise EngineLimitError(
                    f"condition too complex for the engine ({tests} tests in {combinators} "
                    f"all/any groups after compilation; at most {ALPHA_BUDGET - 1} tests and "
                    f"{MAX_COMBINATORS} groups): split it into several rules",
                    package.id,
                    rule.id,
                )
            if not chunks or budget + tests > ALPHA_BUDGET - 1:
                chunks.append({ALWAYS_ACTION: {"all": [{"m": {"$ex": {MARKER: 1}}}]}})
                budget = 1
            action = f"p{index}r{number}"
            rule_of[action] = (package.id, rule.id)
            chunks[-1][action] = {"all": [{"m": expr}]}
            budget += tests
        names = []
        for chunk_number, chunk in enumerate(chunks):
            name = f"{package.id}@{bundle.version.id}#{chunk_number}"
            rulesets[name] = chunk
            names.append(name)
        ruleset_of[package.id] = tuple(names)
    ranks = {
        package.id: rank
        for package in bundle.packages.values()
        if (rank := _ranks(package.rules)) is not None
    }
    return CompiledBundle(
        bundle.version.id,
        rulesets,
        ruleset_of,
        rule_of,
        windows,
        frozenset(fields),
        ranks,
        members,
    )


def _read_fields(
    bundle: Bundle,
) -> tuple[set[str], dict[Window, str], dict[str, set[str]]]:
    """The fields conditions read, a fact key per cron window, and each list field's named
    values."""
    windows: dict[Window, str] = {}
    fields: set[str] = set()
    named: dict[str, set[str]] = {}
    for package in bundle.packages.values():
        for rule in package.rules:
            for node in walk(rule.when):
                if not isinstance(node, Cmp):
                    continue
                fields.add(node.field)
                if node.op == "within" and node.value not in windows:
                    windows[node.value] = f"now__w{len(windows)}"
                if field_kind(node.field) is Kind.LIST:
                    values = node.value if isinstance(node.value, tuple) else (node.value,)
                    named.setdefault(node.field, set()).update(values)
    return fields, windows, named


def _ranks(rules: tuple[Rule, ...]) -> dict[str, tuple[int, int]] | None:
    """Each rule id's (deciding rank, file position), or None when ids repeat."""
    if len({rule.id for rule in rules}) != len(rules):
        return None
    order = sorted(
        range(len(rules)),
        key=lambda n: (rules[n].outcome is not Outcome.DENY, -rules[n].priority, n),
    )
    return {rules[n].id: (rank, n) for rank, n in enumerate(order)}


def _size(expr: dict[str, Any]) -> tuple[int, int]:
    """(alpha tests, $and/$or groups) in a compiled expression."""
    ((operator, operand),) = expr.items()
    if operator in ("$and", "$or"):
        tests, groups = 0, 1
        for part in operand:
            part_tests, part_groups = _size(part)
            tests += part_tests
            groups += part_groups
        return tests, groups
    return 1, 0


class _Compiler:
    def __init__(self, windows: dict[Window, str], members: dict[str, dict[str, str]]):
        self.windows = windows
        self.members = members

    def expr(self, node: Condition, negate: bool) -> dict[str, Any]:
        if isinstance(node, Not):
            return self.expr(node.item, not negate)
        if isinstance(node, All | AnyOf):
            conjunction = isinstance(node, All) != negate
            parts = [self.expr(item, negate) for item in node.items]
            if not parts:
                # all() holds, any() does not; negation flips both.
                return {"$ex" if conjunction else "$nex": {MARKER: 1}}
            return _join("$and" if conjunction else "$or", parts)
        return self.compare(node, negate)

    def compare(self, cmp: Cmp, negate: bool) -> dict[str, Any]:
        kind = field_kind(cmp.field)
        op, value = cmp.op, cmp.value
        key = fact_key(cmp.field)
        if op == "within":
            return {self.windows[value]: FALSE if negate else TRUE}
        if op == "exists":
            present = value != negate
            target = number_key(cmp.field) if kind is Kind.DURATION else key
            return {"$ex" if present else "$nex": {target: 1}}
        if op in ORDER:
            target = number_key(cmp.field)
            positive, negative = ORDER[op]
            bound = number_value(value)
            if not negate:
                return {positive: {target: bound}}
            return {"$or": [{negative: {target: bound}}, {"$nex": {target: 1}}]}
        if kind is Kind.LIST:
            values = value if isinstance(value, tuple) else (value,)
            holds = op in ("contains", "contains_any")
            members = self.members.get(cmp.field)
            if members is not None:
                test = "$ex" if holds != negate else "$nex"
                parts = [{test: {members[v]: 1}} for v in values]
                return _join("$or" if holds != negate else "$and", parts)
            if holds != negate:
                return _join("$or", [{"$iany": {key: {"$i": text_value(v)}}} for v in values])
            # Lists always carry a sentinel item, so $iall is never vacuously false.
            return _join(
                "$and", [{"$iall": {key: {"$neq": {"$i": text_value(v)}}}} for v in values]
            )
        values = value if isinstance(value, tuple) else (value,)
        holds = op in ("eq", "in")
        if holds != negate:
            return _join("$or", [{key: text_value(v)} for v in values])
        differs = _join("$and", [{"$neq": {key: text_value(v)}} for v in values])
        return {"$or": [differs, {"$nex": {key: 1}}]}


def _join(operator: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """`parts` under `operator`, with nested groups of the same operator spliced in."""
    flat: list[dict[str, Any]] = []
    for part in parts:
        flat.extend(part.get(operator, [part]))
    return flat[0] if len(flat) == 1 else {operator: flat}


def _member_keys(
    named: dict[str, set[str]], keys: list[str], limit: int
) -> dict[str, dict[str, str]]:
    """A fact key per value named in each list field's rules, where there are few enough.

    Key names are chosen so that their hashes collide with no other key (see below), and
    only while the fact stays within MAX_FACT_KEYS.
    """
    taken = {_fnv1a(key) for key in keys}
    count = len(keys)
    members: dict[str, dict[str, str]] = {}
    for name in sorted(named):
        values = sorted(named[name])
        if len(values) > limit or count + len(values) > MAX_FACT_KEYS:
            continue
        keys_of: dict[str, str] = {}
        serial = 0
        for value in values:
            key = f"{fact_key(name)}__m{serial}"
            while _fnv1a(key) in taken:
                serial += 1
                key = f"{fact_key(name)}__m{serial}"
            taken.add(_fnv1a(key))
            keys_of[value] = key
            serial += 1
        members[name] = keys_of
        count += len(values)
    return members


def _check_key_hashes(fields: set[str], windows: dict[Window, str]) -> list[str]:
    """Refuse fact keys that durable_rules cannot tell apart; return the keys.

    It identifies a fact's keys by a 32-bit FNV-1a hash alone, so two keys with one hash read
    each other's values (`subject.attributes.l2Bh` and `.pCba` do), and a key hashing like one
    of its own (`sid`, `id`, `$s`, `$forward`) would corrupt sessions or every `$or`.

    Raises:
        EngineLimitError: naming the two keys, or when there are too many keys.
    """
    keys = [MARKER, "sid", "id", "$s", "$forward", *windows.values()]
    for name in sorted(fields - {"now"}):
        keys.append(fact_key(name))
        if field_kind(name) in (Kind.SCALAR, Kind.DURATION):
            keys.append(number_key(name))
    seen: dict[int, str] = {}
    for key in keys:
        other = seen.setdefault(_fnv1a(key), key)
        if other != key:
            raise EngineLimitError(
                f"fact keys {other!r} and {key!r} collide in durable_rules; rename one"
            )
    if len(keys) > MAX_FACT_KEYS:
        raise EngineLimitError(
            f"the rules read {len(fields)} fields ({len(keys)} fact keys); durable_rules "
            f"evaluates at most {MAX_FACT_KEYS} keys per fact"
        )
    return keys


def _fnv1a(key: str) -> int:
    value = 0x811C9DC5
    for byte in key.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFF_FFFF
    return value


def _guarded(expr: dict[str, Any]) -> dict[str, Any]:
    """`expr`, also requiring MARKER when it would hold for a document without our keys.

    durable_rules matches every rule against each session's own state document as well
    ({"sid", "id", "$s"}), so an expression made only of `$nex` tests would match it.
    """
    if not _holds_without_keys(expr):
        return expr
    present = {"$ex": {MARKER: 1}}
    return {"$and": [present, *expr["$and"]]} if "$and" in expr else {"$and": [present, expr]}


def _holds_without_keys(expr: dict[str, Any]) -> bool:
    ((operator, operand),) = expr.items()
    if operator == "$and":
        return all(_holds_without_keys(part) for part in operand)
    if operator == "$or":
        return any(_holds_without_keys(part) for part in operand)
    return operator == "$nex"
