"""Questions a rule declares: asked only of requesters the rule applies to, decided by the
rules engine on the rule's condition without its answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from policyd.domain import Outcome
from policyd.rules.condition import ALWAYS, ANSWERS, AnyOf, Cmp, Condition, Not
from policyd.rules.model import AccessPackage, Bundle, Question, Rule

ASK = "ask:"  # ':' never appears in a package id, so these rulesets never clash with packages


def asking_id(package_id: str) -> str:
    """The ruleset that tells which of a package's rules ask their questions."""
    return ASK + package_id


def applies_without_answers(tree: Condition) -> Condition | bool:
    """A condition on everything but answers that holds exactly when some answers could make
    `tree` hold (True: always; False: never). A rule applies to a requester when it does."""
    return _could(tree)


def _could(tree: Condition) -> Condition | bool:
    if isinstance(tree, Cmp):
        return True if tree.field.startswith(ANSWERS) else tree
    if isinstance(tree, Not):
        inner = _must(tree.item)
        return (not inner) if isinstance(inner, bool) else Not(inner)
    return _join(type(tree), [_could(item) for item in tree.items])


def _must(tree: Condition) -> Condition | bool:
    """Holds exactly when `tree` holds whatever the answers are."""
    if isinstance(tree, Cmp):
        return False if tree.field.startswith(ANSWERS) else tree
    if isinstance(tree, Not):
        inner = _could(tree.item)
        return (not inner) if isinstance(inner, bool) else Not(inner)
    return _join(type(tree), [_must(item) for item in tree.items])


def _join(kind: type, parts: list[Condition | bool]) -> Condition | bool:
    absorbing = kind is AnyOf  # True absorbs an any, False an all
    if absorbing in parts:
        return absorbing
    kept = tuple(part for part in parts if not isinstance(part, bool))
    if not kept:
        return not absorbing  # all of nothing holds; any of nothing does not
    return kept[0] if len(kept) == 1 else kind(kept)


def asking_package(package: AccessPackage) -> AccessPackage | None:
    """A package of one rule per rule that asks questions and can apply to someone, matched
    when it applies; None when no rule of `package` asks any."""
    rules = []
    for rule in package.rules:
        if not rule.questions:
            continue
        applies = applies_without_answers(rule.when)
        if applies is False:
            continue
        when = ALWAYS if applies is True else applies
        rules.append(Rule(id=rule.id, when=when, outcome=Outcome.AUTO_APPROVE, synthetic=True))
    if not any(rule.questions for rule in package.rules):
        return None
    return AccessPackage(id=asking_id(package.id), display_name=package.id, rules=tuple(rules))


def with_asking(bundle: Bundle) -> Bundle:
    """`bundle` plus, for each package whose rules ask questions, its asking ruleset (see
    `asking_package`), so one engine answers both which rule decides and what is asked."""
    extra: dict[str, AccessPackage] = {}
    for package in bundle.packages.values():
        if any(rule.questions for rule in package.rules):
            asking = asking_package(package)
            if asking is not None:
                extra[asking.id] = asking
    if not extra:
        return bundle
    return replace(bundle, packages={**bundle.packages, **extra})


def asked_questions(package: AccessPackage, applying: frozenset[str]) -> tuple[Question, ...]:
    """The package's questions, then those of its rules in `applying` (ids), in file order."""
    extra = tuple(q for rule in package.rules if rule.id in applying for q in rule.questions)
    return package.questions + extra


def every_question(package: AccessPackage) -> Mapping[str, Question]:
    """Every question the package or one of its rules declares, by id."""
    found = {q.id: q for q in package.questions}
    for rule in package.rules:
        found.update((q.id, q) for q in rule.questions)
    return found
