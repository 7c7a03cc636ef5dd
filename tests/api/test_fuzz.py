"""Schemathesis drives every documented operation with generated input: never a 5xx."""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

EXAMPLES = int(os.environ.get("POLICYD_FUZZ_EXAMPLES", "10"))


def test_generated_requests_never_cause_a_server_error(app, admin):
    """Whatever a client sends to any operation, the answer is never a 5xx."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case):
            response = case.call(headers=admin)
            case.validate_response(response, checks=(not_a_server_error,))

        call()
