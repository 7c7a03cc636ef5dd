"""The only code that touches durable_rules: a hardened Host per bundle version.

durable_rules 2.0.28 crashes when its background dispatcher races a caller, when two live
sessions collide on its 32-bit sid hash, or past 1,024 live sessions (see docs/engine.md).
So: the dispatcher never starts, every call into the C core holds one process-wide lock, and
each evaluation asserts its fact into a fresh session that is deleted before the lock is released.
"""

from __future__ import annotations

import itertools
import logging
import threading
from typing import Any

import durable_rules_engine
from durable.engine import Host, MessageNotHandledException

from policyd.rules.compiler import CompiledBundle

log = logging.getLogger(__name__)

# One lock for every Host: the C core keeps process-wide state and never releases the GIL,
# so a finer lock would buy no parallelism and risk the crashes above.
_CORE_LOCK = threading.Lock()


class EngineClosedError(RuntimeError):
    """The engine's bundle version was swapped out; ask the current one."""


class EngineError(RuntimeError):
    """durable_rules failed in a way that is not a 'no rule matched'."""


class _QuietHost(Host):
    """A Host without the timer threads that re-dispatch rulesets behind our back."""

    def __init__(self, collector: list[str]):
        self._collector = collector
        super().__init__()

    def _run(self) -> None:  # the dispatcher is what corrupts memory; never start it
        return None

    def get_action(self, action_name: str):
        collector = self._collector

        def record(_closure) -> None:
            collector.append(action_name)

        return record


class Engine:
    """Matches facts against one compiled bundle; safe to call from many threads."""

    def __init__(self, compiled: CompiledBundle):
        self.compiled = compiled
        self._matched: list[str] = []
        self._sids = itertools.count(1)
        self._closed = False
        with _CORE_LOCK:
            self._host = _QuietHost(self._matched)
            # register_rulesets pops "run" from the definitions it is given: pass copies.
            self._host.register_rulesets(
                {
                    name: {k: dict(v) for k, v in rules.items()}
                    for name, rules in compiled.rulesets.items()
                }
            )

    def match(self, package_id: str, fact: dict[str, Any]) -> frozenset[str]:
        """Ids of every rule of `package_id` whose condition holds for `fact`.

        Raises:
            KeyError: the bundle has no such package.
            EngineClosedError: this version was closed by a swap.
            EngineError: the engine failed; the session was still cleaned up.
        """
        ruleset = self.compiled.ruleset_of[package_id]
        with _CORE_LOCK:
            if self._closed:
                raise EngineClosedError(self.compiled.version)
            sid = str(next(self._sids))
            self._matched.clear()
            try:
                self._host.assert_fact(ruleset, {**fact, "sid": sid})
            except MessageNotHandledException:
                pass  # no rule matched: the default deny is decided by the caller
            except Exception as err:
                raise EngineError(f"durable_rules failed: {err}") from err
            finally:
                self._host.delete_state(ruleset, sid)
            actions = tuple(self._matched)
            self._matched.clear()
        return frozenset(self.compiled.rule_of[action][1] for action in actions)

    def close(self) -> None:
        """Release the C rulesets; later `match` calls raise EngineClosedError."""
        with _CORE_LOCK:
            if self._closed:
                return
            self._closed = True
            for ruleset in self._host._ruleset_list:
                durable_rules_engine.delete_ruleset(ruleset._handle)
            self._host._ruleset_list.clear()
            self._host._ruleset_directory.clear()

    @property
    def closed(self) -> bool:
        return self._closed
