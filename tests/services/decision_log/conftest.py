"""Fixtures of the decision-log tests: a spool folder and a drainer over it."""

from __future__ import annotations

import pytest

from policyd.services.decision_log import Drainer


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "spool"


@pytest.fixture
def drainer(store, folder) -> Drainer:
    return Drainer(store.engine, folder)
