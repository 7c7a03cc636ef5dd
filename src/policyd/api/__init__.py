"""Flask application factory: assembles the API around the plain-Python services."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import Flask
from sqlalchemy.exc import IntegrityError
from swagger_ui_bundle import swagger_ui_path

from policyd import compose
from policyd.api import context
from policyd.api.blueprint import PolicydApi
from policyd.api.components import Components
from policyd.api.pipeline import DECISIONS, PolicydFlask, RequestPipeline, body_limit
from policyd.collector import freeze_startup
from policyd.rules import PolicyRuntime
from policyd.settings import SettingError, Settings

if TYPE_CHECKING:
    from policyd.api.oidc import OidcVerifier
    from policyd.connectors.config import Connectors
    from policyd.services.decision_log import DecisionLog
    from policyd.services.subject_cache import SubjectCache
    from policyd.services.versions import PolicySync
    from policyd.store import Database

# Keys of a `create_app` mapping that are settings; the rest is Flask's configuration.
SETTING_PREFIXES = ("POLICYD_", "PROMETHEUS_")
DOCS_ASSETS = "/docs/assets"


def create_app(config: Settings | Mapping[str, Any] | None = None) -> Flask:
    """Assemble the app from `config`: Settings, a mapping of POLICYD_* names (tests; keys
    Flask knows, such as TESTING, go to Flask) or, when None, the process environment.

    Raises:
        SettingError: a setting's value is unusable; the message names it.
        ProblemsError: a notification template (checked before anything is opened) or the
            connectors file is bad (file:line).
    """
    # The API docs page loads Swagger UI from the installed swagger-ui-bundle, never a CDN.
    app = PolicydFlask("policyd", static_folder=swagger_ui_path, static_url_path=DOCS_ASSETS)
    settings = _settings(app, config)
    templates = compose.load_templates(settings)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,  # larger bodies: 413 (api/errors.py)
        API_TITLE="policyd",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=f"{DOCS_ASSETS}/",
    )
    context.install(app, _build(app, settings, templates))
    app.teardown_appcontext(context.close_session)
    _init_routes(app)
    if config is None:  # a deployment's server process, ready to answer (tests make many apps)
        freeze_startup()
    return app


def after_fork(app: Flask) -> None:
    """Make a process forked from the one that built `app` its own (gunicorn's post_fork with
    a preloaded app, policyd.api.preload): the policy version stays as loaded, shared with
    the parent page by page, but no database connection is shared (the parent's are let go,
    not closed) and the background threads start in this process.
    """
    parts = context.components(app)
    parts.database.engine.dispose(close=False)
    parts.sync.after_fork()
    parts.decision_log.after_fork()
    active = parts.runtime.active.version if parts.runtime.active else "none"
    app.logger.info(
        "process %d serves policy version %s as loaded before the fork", os.getpid(), active
    )


def _settings(app: Flask, config: Settings | Mapping[str, Any] | None) -> Settings:
    """The settings `config` gives; the keys of a mapping that Flask knows go to Flask."""
    if config is None:  # a deployment (gunicorn app:app): this process's logging is ours
        settings = Settings.from_env()
        settings.configure_logging()
        return settings
    if isinstance(config, Settings):
        return config
    flask_keys = {k: v for k, v in config.items() if not k.startswith(SETTING_PREFIXES)}
    app.config.from_mapping(flask_keys)
    return Settings.from_mapping(
        {k: v for k, v in config.items() if k.startswith(SETTING_PREFIXES)}
    )


def _init_routes(app: Flask) -> None:
    """Authentication, health, the error handlers, every blueprint and the request pipeline."""
    from policyd.api import (
        admin,
        assignments,
        auth,
        auto_assign,
        catalogs,
        compliance,
        decisions,
        directory,
        errors,
        health,
        jobs,
        questions,
        replay,
        requests,
        reviews,
        sod,
        versions,
    )

    auth.init_app(app)
    health.init_app(app)
    api = PolicydApi(app)
    errors.init_app(app)  # after Api(), whose own HTTP error handler this replaces
    api.spec.components.security_scheme(
        "bearer", {"type": "http", "scheme": "bearer", "description": "API token or OIDC JWT"}
    )
    api.spec.options["security"] = [{"bearer": []}]
    blueprints = (decisions, requests, assignments, versions, directory, jobs, admin)
    governance = (reviews, questions, catalogs, auto_assign)
    for module in (*blueprints, replay, sod, compliance, *governance):
        api.register_blueprint(module.blp)
    route = decisions.DecisionRoute(app)
    app.wsgi_app = _pipeline(app, decisions.PATH, route)  # type: ignore[method-assign]


def _pipeline(app: Flask, decisions_path: str, decide: Any) -> RequestPipeline:
    """Around every route, before routing (every answer, a 401 or 404 too, carries the id);
    POST /v1/decisions is answered there, by its one implementation (api/decisions.py)."""
    method_path = (DECISIONS[1], decisions_path)
    return RequestPipeline(
        app.wsgi_app,
        context.components(app).metrics,
        steps=[body_limit(app)],
        routes={method_path: (DECISIONS[0], decide)},
    )


def _build(app: Flask, settings: Settings, templates: Any) -> Components:
    """Everything the app shares, built once: the store, the decision log, the connectors,
    the active policy version, OIDC, the worker (with the checked notification `templates`),
    the token cache and the request metrics."""
    from prometheus_client import CollectorRegistry

    from policyd.api.auth import TokenCache
    from policyd.api.health import request_metrics

    database = _open_store(settings)
    decision_log, subjects = _open_decisions(database, settings)
    connectors = compose.open_connectors(settings, database)
    runtime, sync = _open_policies(app, settings, database, connectors)
    oidc = _open_oidc(settings)
    worker = compose.build_worker(
        settings, database, connectors, runtime, sync, templates=templates
    )
    registry = CollectorRegistry()
    return Components(
        settings=settings,
        database=database,
        connectors=connectors,
        decision_log=decision_log,
        subjects=subjects,
        runtime=runtime,
        sync=sync,
        worker=worker,
        token_cache=TokenCache(settings.token_cache_seconds),
        registry=registry,
        metrics=request_metrics(registry),
        oidc=oidc,
    )


def _open_store(settings: Settings) -> Database:
    database = compose.open_database(settings.database)
    auto_upgrade = settings.auto_upgrade
    if auto_upgrade if auto_upgrade is not None else database.is_sqlite:
        database.upgrade()
    return database


def _open_decisions(database: Database, settings: Settings) -> tuple[DecisionLog, SubjectCache]:
    """The decision-log writer (its drain or lag-check thread starts here) and the subject
    cache."""
    from policyd.services.decision_log import DecisionLog
    from policyd.services.subject_cache import SubjectCache

    decision_log = DecisionLog(
        database.engine,
        settings.spool_dir,
        interval=settings.decision_log_interval,
        drain=settings.decision_log_drain == "thread",
        clock=settings.clock,
    )
    decision_log.start()
    subjects = SubjectCache(settings.subject_cache_seconds)
    subjects.watch(database.sessions)
    return decision_log, subjects


def _open_policies(
    app: Flask, settings: Settings, database: Database, connectors: Connectors
) -> tuple[PolicyRuntime, PolicySync]:
    """The policy runtime on the active version; on an empty database POLICYD_POLICIES is
    published first."""
    from policyd.services.versions import PolicySync

    runtime = PolicyRuntime(memo_size=settings.match_memo, resident=settings.resident_packages)
    # Requests never wait for a new version: it is built beside them, then swapped in.
    sync = PolicySync(runtime, database.session, settings.sync_interval, background=True)
    _publish_initial(app, settings, database, connectors)
    sync.sync()
    return runtime, sync


def _publish_initial(
    app: Flask, settings: Settings, database: Database, connectors: Connectors
) -> None:
    """Publish POLICYD_POLICIES when no version is active; problems are logged."""
    from policyd.rules import ProblemsError, load_bundle
    from policyd.services.actor import SYSTEM
    from policyd.services.errors import InvalidError
    from policyd.services.versions import VersionService

    with database.session() as session:
        service = VersionService(session)
        directory = settings.policies
        if service.active_id() is None and directory:
            try:
                bundle = load_bundle(directory)
            except ProblemsError as err:
                app.logger.error("policies in %s not published:\n%s", directory, err)
            else:
                try:
                    service.publish(
                        SYSTEM,
                        bundle.files,
                        message=f"initial publication of {directory}",
                        git_commit=bundle.version.git_commit,
                        git_dirty=(bundle.version.git_dirty if bundle.version.git_commit else None),
                        now=settings.clock(),
                        connectors=connectors.types(),
                    )
                except IntegrityError:
                    # Another worker starting at the same moment published it first.
                    session.rollback()
                except InvalidError as err:
                    errors = "\n".join(err.errors)
                    app.logger.error("policies in %s not published:\n%s", directory, errors)


def _open_oidc(settings: Settings) -> OidcVerifier | None:
    issuer = settings.oidc_issuer
    if not issuer:
        return None
    from policyd.api.oidc import OidcVerifier

    return OidcVerifier(
        issuer,
        settings.oidc_audience or "policyd",
        jwks_url=settings.oidc_jwks_url,
        jwks=settings.oidc_jwks,
    )


__all__ = ["SettingError", "Settings", "after_fork", "create_app"]
