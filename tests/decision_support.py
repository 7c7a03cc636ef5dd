"""Decision-record factory shared by the store and decision-log tests."""

from __future__ import annotations

from datetime import datetime

from policyd.store.models import DecisionRecord


def decision_record(record_id: str, at: datetime, *, kept: bool = False) -> DecisionRecord:
    """An allow decision for ada on package `p` at `at`, nothing else set; `kept` when a
    request or assignment will refer to it."""
    return DecisionRecord(
        id=record_id,
        at=at,
        package="p",
        subject_id="ada",
        outcome="allow",
        rule=None,
        matched=[],
        reason="",
        version="v1",
        input={},
        result={},
        principal="ada",
        kept=kept,
    )
