"""Rule files: load, validate, compile to durable_rules, and decide."""

from policyd.rules.decision import NO_RULE_MATCHED, InvalidInputError, choose, decide
from policyd.rules.engine import Engine, EngineClosedError
from policyd.rules.loader import load_bundle, load_texts
from policyd.rules.model import Bundle, UnknownPackageError
from policyd.rules.runtime import Policy, PolicyRuntime
from policyd.rules.source import Problem, ProblemsError

__all__ = [
    "NO_RULE_MATCHED",
    "Bundle",
    "Engine",
    "EngineClosedError",
    "InvalidInputError",
    "Policy",
    "PolicyRuntime",
    "Problem",
    "ProblemsError",
    "UnknownPackageError",
    "choose",
    "decide",
    "load_bundle",
    "load_texts",
]
