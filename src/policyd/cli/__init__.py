"""`policyd` command line: rule authoring and running the service."""

from policyd.cli import (  # noqa: F401 - registers commands
    authoring,
    auto_assign,
    compliance,
    decision_log,
    directory,
    evaluation,
    governance,
    notifications,
    organizations,
    policy_diff,
    replay,
    reviews,
    service,
    versions,
    worker,
)
from policyd.cli.base import main
from policyd.cli.service import build_server, close_server

__all__ = ["build_server", "close_server", "main"]
