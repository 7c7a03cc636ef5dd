"""The only code that touches durable_rules: one C ruleset per package and bundle version.

durable_rules 2.0.28 crashes when its background dispatcher races a caller, when two live
sessions collide on its 32-bit sid hash, past 1,024 live sessions, and when a session whose fact
matched nothing is deleted (see docs/engine.md). So this adapter drives the C core directly — no
`durable.engine.Host`, hence no dispatcher threads at all — with one process-wide lock around
assert, read and retract; each ruleset has exactly one session, made when the ruleset is and
emptied again (its fact retracted) before the lock is released; and every ruleset carries an
always-true rule, so no fact ever goes unmatched.

Creating a session costs ~8 KiB of zeroed tables per rule, so a fresh session per evaluation
made up half of a decision's instructions; the one kept session costs nothing per evaluation.

Matching is a pure function of the compiled bundle and the fact, so each engine remembers the
matches of recent facts (a bounded LRU, keyed by the exact JSON the C core would read); it dies
with its engine, so a version swap starts afresh.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any

import durable_rules_engine

from policyd.rules.compiler import ALWAYS_ACTION, CompiledBundle

# The C core keeps process-wide state and never releases the GIL, so one lock for every
# ruleset costs no parallelism and rules out the races above.
_CORE_LOCK = threading.Lock()
_HANDLED = 0
SESSION = "1"  # the one session of every ruleset
_SID_SUFFIX = f', "sid": "{SESSION}"}}'
MEMO_SIZE = 2048  # facts remembered per engine
MEMO_MAX_FACT = 2048  # characters; a longer fact (hundreds of groups) is matched, not remembered


def _json_encoder() -> Callable[[Any], str]:
    """json.dumps with its defaults, minus the per-call set-up of its C encoder."""
    if c_make_encoder is None:  # Python built without the json accelerator
        return json.dumps
    chunks = c_make_encoder(
        None, json.JSONEncoder().default, encode_basestring_ascii, None,
        ": ", ", ", False, False, True,
    )  # fmt: skip
    return lambda value: "".join(chunks(value, 0))


_to_json = _json_encoder()
# The C core's entry points, looked up once rather than per call.
_assert_fact = durable_rules_engine.assert_fact
_start_action = durable_rules_engine.start_action_for_state
_complete_and_start = durable_rules_engine.complete_and_start_action
_retract_fact = durable_rules_engine.retract_fact


class EngineClosedError(RuntimeError):
    """The engine's bundle version was swapped out; ask the current one."""


class EngineError(RuntimeError):
    """durable_rules failed; the engine refuses further work rather than risk a crash."""


class Engine:
    """Matches facts against one compiled bundle; safe to call from many threads.

    Args:
        memo_size: how many recent facts' matches to remember (0: none); at the defaults the
            memo holds at most about 5 MiB.
    """

    def __init__(self, compiled: CompiledBundle, *, memo_size: int = MEMO_SIZE):
        self.compiled = compiled
        # lru_cache is thread-safe; two threads missing on one fact both match it, alike.
        self._memo = functools.lru_cache(maxsize=max(memo_size, 0))(self._match_payload)
        self._memo_off = memo_size <= 0  # then skip the memo's wrapper too
        self._closed = False
        self._broken: str | None = None
        self._handles: dict[str, int] = {}
        self._sessions: set[str] = set()  # rulesets whose session exists
        # What callers work out once per package of this engine (decision.py's plans).
        self.plans: dict[str, Any] = {}
        with _CORE_LOCK:
            try:
                for name, rules in compiled.rulesets.items():
                    self._handles[name] = durable_rules_engine.create_ruleset(
                        name, json.dumps(rules)
                    )
            except Exception:
                self._release()
                raise
        # Looked up once here rather than per evaluation: package -> ((ruleset, handle), ...)
        # and action -> rule id.
        self._chunks = {
            package_id: tuple((name, self._handles[name]) for name in names)
            for package_id, names in compiled.ruleset_of.items()
        }
        self._rule_id = {action: rule_id for action, (_, rule_id) in compiled.rule_of.items()}

    def match(self, package_id: str, fact: dict[str, Any]) -> frozenset[str]:
        """Ids of every rule of `package_id` whose condition holds for `fact`.

        Raises:
            KeyError: the bundle has no such package.
            EngineClosedError: this version was closed by a swap.
            EngineError: the engine failed earlier or now.
        """
        return self.match_json(package_id, _to_json(fact))

    def match_json(self, package_id: str, text: str) -> frozenset[str]:
        """As `match`, for a fact already written as JSON text (rules/fact_text.py).

        Raises:
            KeyError, EngineClosedError, EngineError: as `match`.
        """
        if package_id not in self._chunks:
            raise KeyError(package_id)
        # Exactly what the C core reads: equal text, equal matches (1, 1.0 and true differ).
        payload = text[:-1]
        payload += _SID_SUFFIX if len(payload) > 1 else _SID_SUFFIX[2:]
        if self._closed:  # a remembered match must not outlive its version either
            raise EngineClosedError(self.compiled.version)
        if self._broken:
            raise EngineError(self._broken)
        if self._memo_off or len(payload) > MEMO_MAX_FACT:
            return self._match_payload(package_id, payload)
        return self._memo(package_id, payload)

    def _match_payload(self, package_id: str, payload: str) -> frozenset[str]:
        """Assert the fact into each of the package's rulesets (into the one session of each),
        collect the actions it triggers, and retract it again.

        Whatever fails leaves a session in an unknown state, so the engine is marked broken
        and refuses further work. The calls into the C core are written out here rather than
        in a helper per ruleset: on small packages this wrapper was a third of a decision.
        """
        matched: list[str] = []
        rule_id = self._rule_id
        ruleset = ""
        with _CORE_LOCK:
            if self._closed:
                raise EngineClosedError(self.compiled.version)
            if self._broken:
                raise EngineError(self._broken)
            try:
                for ruleset, handle in self._chunks[package_id]:
                    code, state = _assert_fact(handle, payload)
                    self._sessions.add(ruleset)
                    if code != _HANDLED:
                        # Unmatched cannot happen with the always-true rule, nor "already
                        # there" with every fact retracted: the session is not what we think.
                        raise EngineError(f"assert_fact returned {code}")
                    result = _start_action(handle, state)
                    message = result[1] if result else None
                    while message:  # '{"<action>":{"m":{...}}}'; action names are [a-z0-9]
                        action = message[2 : message.index('"', 2)]
                        if action != ALWAYS_ACTION:
                            matched.append(rule_id[action])
                        message = _complete_and_start(handle, state)
                    _retract_fact(handle, payload)
            except Exception as err:
                self._broken = f"durable_rules failed on ruleset {ruleset}: {err}"
                raise EngineError(self._broken) from err
        return frozenset(matched)

    @property
    def remembered(self) -> int:
        """How many facts' matches this engine remembers now."""
        return self._memo.cache_info().currsize

    def close(self) -> None:
        """Release the C rulesets; later `match` calls raise EngineClosedError."""
        with _CORE_LOCK:
            if not self._closed:
                self._closed = True
                self._release()
        self._memo.cache_clear()

    def _release(self) -> None:
        # delete_ruleset leaves sessions allocated: delete each ruleset's session first
        # (only a session that holds no fact, so never one an error left half-used).
        for name, handle in self._handles.items():
            if name in self._sessions and not self._broken:
                durable_rules_engine.delete_state(handle, SESSION)
            durable_rules_engine.delete_ruleset(handle)
        self._handles.clear()
        self._sessions.clear()

    @property
    def closed(self) -> bool:
        return self._closed
