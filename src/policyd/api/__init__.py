"""Flask application factory: assembles the API around the plain-Python services."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask_smorest import Api
from sqlalchemy.exc import IntegrityError

from policyd.api.errors import ApiErrorSchema
from policyd.rules import PolicyRuntime
from policyd.store import Database

DEFAULTS: dict[str, Any] = {
    "POLICYD_DATABASE_URL": "sqlite:///policyd.db",
    "POLICYD_POLICIES": "policies",
    "POLICYD_TRUSTED_APPS": "",
    "POLICYD_SYNC_INTERVAL": 2.0,
    "POLICYD_OIDC_ISSUER": None,
    "POLICYD_OIDC_AUDIENCE": None,
    "POLICYD_OIDC_JWKS_URL": None,
    "POLICYD_OIDC_JWKS": None,
    "POLICYD_TOKEN_CACHE_SECONDS": 5,  # how long a process trusts a token it checked
    "POLICYD_CONNECTORS": None,  # connector instances file (connectors.yaml)
    "POLICYD_DELIVERY": "inline",  # inline: run new jobs at once; worker: leave them to workers
    "POLICYD_EXTERNAL_USERS": "none",  # guests without access: none | disable | disable_then_delete
    "POLICYD_EXTERNAL_DELETE_AFTER": "P30D",  # with disable_then_delete: delete this long after
    "POLICYD_REMINDERS": "P14D,P1D",  # expiry reminders this long before access ends ("": none)
    "POLICYD_DECISION_LOG": "spool",  # spool: a local file, inserted in the background; or sync
    "POLICYD_SPOOL_DIR": None,  # default: beside the SQLite file, or in the temp folder
    "POLICYD_DECISION_LOG_INTERVAL": 0.1,  # seconds between inserts of spooled entries
    # Who inserts them: process (a shipper process per spool folder, at idle CPU priority;
    # the default on Linux) or thread (one in each serving process; the default elsewhere)
    "POLICYD_DECISION_LOG_STORER": None,
    "POLICYD_SUBJECT_CACHE_SECONDS": 2.0,  # decisions only; 0 turns the cache off
    "POLICYD_MATCH_MEMO": 2048,  # facts whose rule matches each version remembers; 0: none
    "POLICYD_DECISION_HOTPATH": "on",  # plain POST /v1/decisions skip Flask (api/hotpath.py)
}


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Assemble the app from POLICYD_* environment variables, or from `test_config` alone."""
    app = Flask("policyd")
    app.config.from_mapping(DEFAULTS)
    if test_config is None:
        app.config.from_mapping({k: v for k, v in os.environ.items() if k in DEFAULTS})
    else:
        app.config.from_mapping(test_config)
    app.config.setdefault("POLICYD_CLOCK", lambda: datetime.now(UTC))
    _check_settings(app)  # before anything is opened
    trusted = app.config["POLICYD_TRUSTED_APPS"]
    if isinstance(trusted, str):
        app.config["POLICYD_TRUSTED_APPS"] = [t.strip() for t in trusted.split(",") if t.strip()]
    app.config.update(
        API_TITLE="policyd",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
    )
    _init_store(app)
    _init_decisions(app)
    _init_connectors(app)
    _init_policies(app)
    _init_oidc(app)
    _init_worker(app)

    from policyd.api import (
        admin,
        assignments,
        auth,
        decisions,
        directory,
        errors,
        health,
        hotpath,
        jobs,
        requests,
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
    for module in (decisions, requests, assignments, versions, directory, jobs, admin):
        api.register_blueprint(module.blp)
    app.wsgi_app = hotpath.DecisionHotPath(app, app.wsgi_app)  # type: ignore[method-assign]
    return app


class PolicydApi(Api):
    ERROR_SCHEMA = ApiErrorSchema  # one error shape for every documented error


def _init_store(app: Flask) -> None:
    from policyd.api import context

    database = Database(app.config["POLICYD_DATABASE_URL"])
    if app.config.get("POLICYD_AUTO_UPGRADE", database.is_sqlite):
        database.upgrade()
    app.extensions["policyd.db"] = database
    app.teardown_appcontext(context.close_session)


def _init_decisions(app: Flask) -> None:
    """The decision-log writer (its flusher thread starts here) and the subject cache."""
    from policyd.services.decision_log import DecisionLog
    from policyd.services.subject_cache import SubjectCache

    database: Database = app.extensions["policyd.db"]
    decision_log = DecisionLog(
        database.engine,
        app.config["POLICYD_DECISION_LOG"],
        app.config["POLICYD_SPOOL_DIR"],
        interval=float(app.config["POLICYD_DECISION_LOG_INTERVAL"]),
        storer=app.config["POLICYD_DECISION_LOG_STORER"],
    )
    decision_log.start()
    app.extensions["policyd.decision_log"] = decision_log
    subjects = SubjectCache(float(app.config["POLICYD_SUBJECT_CACHE_SECONDS"]))
    subjects.watch(database.sessions)
    app.extensions["policyd.subjects"] = subjects


def _init_policies(app: Flask) -> None:
    """Load the active version; on an empty database publish POLICYD_POLICIES first."""
    from policyd.rules import ProblemsError, load_bundle
    from policyd.services.actor import SYSTEM
    from policyd.services.errors import InvalidError
    from policyd.services.versions import PolicySync, VersionService

    database: Database = app.extensions["policyd.db"]
    runtime = PolicyRuntime(memo_size=int(app.config["POLICYD_MATCH_MEMO"]))
    sync = PolicySync(runtime, database.session, app.config["POLICYD_SYNC_INTERVAL"])
    app.extensions["policyd.runtime"] = runtime
    app.extensions["policyd.sync"] = sync
    with database.session() as session:
        service = VersionService(session)
        directory = app.config["POLICYD_POLICIES"]
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
                        now=app.config["POLICYD_CLOCK"](),
                        connectors=app.extensions["policyd.connectors"].types(),
                    )
                except IntegrityError:
                    # Another worker starting at the same moment published it first.
                    session.rollback()
                except InvalidError as err:
                    errors = "\n".join(err.errors)
                    app.logger.error("policies in %s not published:\n%s", directory, errors)
    sync.sync()


def _init_connectors(app: Flask) -> None:
    from policyd.connectors.config import Connectors, load_instances

    database: Database = app.extensions["policyd.db"]
    instances = load_instances(app.config["POLICYD_CONNECTORS"])
    app.extensions["policyd.connectors"] = Connectors(instances, database.session)


def _init_worker(app: Flask) -> None:
    from policyd.connectors.config import Notifiers, load_notifiers
    from policyd.rules.condition import parse_duration
    from policyd.services.external_users import ExternalUsers
    from policyd.services.notifications import parse_reminders
    from policyd.worker import Worker

    database: Database = app.extensions["policyd.db"]
    notifiers = Notifiers(load_notifiers(app.config["POLICYD_CONNECTORS"]))
    app.extensions["policyd.worker"] = Worker(
        database.session,
        app.extensions["policyd.connectors"],
        app.extensions["policyd.runtime"],
        notifiers=notifiers,
        external_users=ExternalUsers(app.config["POLICYD_EXTERNAL_USERS"]),
        delete_after=_setting(app, "POLICYD_EXTERNAL_DELETE_AFTER", parse_duration),
        reminders=_setting(app, "POLICYD_REMINDERS", parse_reminders),
    )


def _check_settings(app: Flask) -> None:
    from policyd.rules.condition import parse_duration
    from policyd.services.notifications import parse_reminders

    _setting(app, "POLICYD_EXTERNAL_DELETE_AFTER", parse_duration)
    _setting(app, "POLICYD_REMINDERS", parse_reminders)


class SettingError(ValueError):
    """A POLICYD_* setting has a value the service cannot use; the message names it."""


def _setting(app: Flask, name: str, parse: Callable[[str], Any]) -> Any:
    """A parsed setting; a bad value stops the start with the setting's name."""
    try:
        return parse(app.config[name])
    except ValueError as err:
        raise SettingError(f"{name}: {err}") from None


def _init_oidc(app: Flask) -> None:
    issuer = app.config["POLICYD_OIDC_ISSUER"]
    if not issuer:
        return
    from policyd.api.oidc import OidcVerifier

    app.extensions["policyd.oidc"] = OidcVerifier(
        issuer,
        app.config["POLICYD_OIDC_AUDIENCE"] or "policyd",
        jwks_url=app.config["POLICYD_OIDC_JWKS_URL"],
        jwks=app.config["POLICYD_OIDC_JWKS"],
    )


__all__ = ["create_app"]
