"""Liveness, readiness and Prometheus metrics (no authentication)."""

from __future__ import annotations

from flask import Flask, jsonify
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)


def init_app(app: Flask) -> None:
    """Serve /healthz, /readyz and /metrics from the app's metrics registry."""
    from policyd.api import context

    registry = context.components(app).registry
    backlog, log_lag = _gauges(registry)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz():
        return _readiness(app)

    @app.get("/metrics")
    def metrics():
        return _scrape(app, registry, backlog, log_lag)


def request_metrics(registry: CollectorRegistry) -> dict[str, Counter | Histogram]:
    """The decision counter and the request latency histogram, in `registry`; the request
    pipeline (api/pipeline.py) observes them for every route."""
    decisions = Counter(
        "policyd_decisions_total", "Decisions by outcome", ["outcome"], registry=registry
    )
    latency = Histogram(
        "policyd_request_seconds", "HTTP request latency", ["endpoint", "method"], registry=registry
    )
    return {"decisions": decisions, "latency": latency}


def _gauges(registry: CollectorRegistry) -> tuple[Gauge, dict[str, Gauge]]:
    """The job backlog gauge and the decision-log lag gauges by name, set at each scrape."""
    backlog = Gauge(
        "policyd_job_backlog",
        "Grant and revoke jobs queued or running",
        registry=registry,
        multiprocess_mode="liveall",
    )
    # How far the decision log is behind this host's spool (docs/storage.md): the same value
    # in every process of a host, so the largest one counts.
    log_lag = {
        name: Gauge(name, text, registry=registry, multiprocess_mode="max")
        for name, text in (
            ("policyd_decision_log_pending_bytes", "Spooled decision-log bytes not stored"),
            ("policyd_decision_log_pending_entries", "Spooled decision-log entries not stored"),
            ("policyd_decision_log_oldest_pending_seconds", "Age of the oldest unstored entry"),
        )
    }
    return backlog, log_lag


def _readiness(app: Flask):
    """Ready once the database answers and a valid policy version is loaded; 503 otherwise."""
    from policyd.api import context
    from policyd.services.probe import ping

    try:
        ping(context.session())
    except Exception as err:
        return jsonify(status="unavailable", message=f"database unreachable: {err}"), 503
    components = context.components(app)
    components.sync.maybe_sync()
    policy = components.runtime.active
    if policy is None:
        return jsonify(status="unavailable", message="no valid policy version is loaded"), 503
    decision_log = components.decision_log
    lag = decision_log.lag().to_dict(decision_log.clock())
    return jsonify(status="ready", version=policy.version, decision_log=lag)


def _scrape(app: Flask, registry: CollectorRegistry, backlog: Gauge, log_lag: dict[str, Gauge]):
    """The metrics in Prometheus' text format, the gauges set first."""
    from policyd.api import context
    from policyd.services.jobs import JobService

    components = context.components(app)
    backlog.set(JobService(context.session()).backlog())
    decision_log = components.decision_log
    lag = decision_log.lag()
    log_lag["policyd_decision_log_pending_bytes"].set(lag.bytes)
    log_lag["policyd_decision_log_pending_entries"].set(lag.entries)
    seconds = lag.seconds(decision_log.clock())
    log_lag["policyd_decision_log_oldest_pending_seconds"].set(seconds)
    source = registry
    if components.settings.prometheus_multiproc_dir:
        # Under gunicorn every worker writes its samples to this folder; add them up.
        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)
    return generate_latest(source), 200, {"Content-Type": CONTENT_TYPE_LATEST}
