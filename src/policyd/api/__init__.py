"""Flask application factory (the HTTP API grows here; see docs and issue tracker)."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify

from policyd.rules import PolicyRuntime, ProblemsError, load_bundle


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Assemble the app; configuration comes from POLICYD_* variables or `test_config`."""
    app = Flask("policyd")
    app.config.from_mapping(POLICYD_POLICIES=os.environ.get("POLICYD_POLICIES", "policies"))
    if test_config:
        app.config.from_mapping(test_config)
    runtime = PolicyRuntime()
    try:
        runtime.activate(load_bundle(app.config["POLICYD_POLICIES"]))
    except ProblemsError as err:
        app.logger.error("policies not loaded:\n%s", err)
    app.extensions["policyd.runtime"] = runtime

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        policy = runtime.active
        if policy is None:
            return jsonify(status="unavailable", message="no valid policy version is loaded"), 503
        return jsonify(status="ready", version=policy.version)

    return app
