"""Every POLICYD_* setting: typed, checked and read from the environment in this one place."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from policyd.setting_values import (
    iso_text,
    parse_bytes,
    parse_choice,
    parse_count,
    parse_flag,
    parse_iso_duration,
    parse_iso_durations,
    parse_language,
    parse_lease,
    parse_names,
    parse_number,
    parse_optional_choice,
    parse_optional_flag,
    parse_optional_offset,
    parse_optional_path,
    parse_optional_text,
    parse_port,
    parse_positive,
    parse_public_url,
    parse_seconds,
    parse_text,
)

log = logging.getLogger(__name__)

PREFIX = "POLICYD_"
# Variables of the test suite and the benchmarks share the prefix; the service ignores them.
NOT_SETTINGS = ("POLICYD_TEST_", "POLICYD_NO_SKIP", "POLICYD_DIFFERENTIAL_", "POLICYD_FUZZ_")


_warned: set[str] = set()  # unknown variables already logged by this process


class SettingError(ValueError):
    """A POLICYD_* setting has a value the service cannot use; the message names it."""

    def __init__(self, setting: str, reason: str):
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


def default_home() -> Path:
    """Where the embedded default keeps its database and spool: $XDG_DATA_HOME/policyd, else
    ~/.local/share/policyd. The same place from every folder, so the CLI finds the database
    `policyd serve` made."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "policyd"


def environment() -> Mapping[str, str]:
    """The process environment, for `${VAR}` secret references in connectors.yaml."""
    return os.environ


# -- parsers: text (from the environment) or an already typed value (from tests) -> the type


def _setting(env: str, parse: Callable[[Any], Any], default: Any, doc: str, **kw: Any) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc}, **kw)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Settings:
    """The service's settings. Build them with `from_env()` (processes) or `from_mapping()`
    (tests, `create_app`); every value passes the same parser, so text and typed values alike
    are checked, and a bad one raises SettingError naming the variable."""

    database_url: str | None = _setting(
        "POLICYD_DATABASE_URL",
        parse_optional_text,
        None,
        "SQLAlchemy URL of the database. Default: SQLite in `policyd.db` under POLICYD_HOME.",
    )
    home: Path | None = _setting(
        "POLICYD_HOME",
        parse_optional_path,
        None,
        "Folder of the embedded default's database and decision-log spool. Default: "
        "`$XDG_DATA_HOME/policyd`, else `~/.local/share/policyd`.",
    )
    policies: str = _setting(
        "POLICYD_POLICIES",
        parse_text,
        "policies",
        "Rule folder published on the first start when the database has no version yet "
        "('' publishes nothing).",
    )
    host: str = _setting("POLICYD_HOST", parse_text, "127.0.0.1", "Address `policyd serve` binds.")
    port: int = _setting("POLICYD_PORT", parse_port, 8080, "Port `policyd serve` listens on.")
    auto_upgrade: bool | None = _setting(
        "POLICYD_AUTO_UPGRADE",
        parse_optional_flag,
        None,
        "Migrate the schema when the API starts. Default: on for SQLite, off otherwise "
        "(run `policyd db upgrade`).",
    )
    trusted_apps: tuple[str, ...] = _setting(
        "POLICYD_TRUSTED_APPS",
        parse_names,
        (),
        "Comma-separated principals of role `app` that may file requests on behalf of others.",
    )
    sync_interval: float = _setting(
        "POLICYD_SYNC_INTERVAL",
        parse_number,
        2.0,
        "Seconds between checks for a newly activated policy version.",
    )
    token_cache_seconds: float = _setting(
        "POLICYD_TOKEN_CACHE_SECONDS",
        parse_number,
        5.0,
        "How long a process trusts an API token it checked (0: check every call).",
    )
    oidc_issuer: str | None = _setting(
        "POLICYD_OIDC_ISSUER", parse_optional_text, None, "Accept OIDC JWTs from this issuer."
    )
    oidc_audience: str | None = _setting(
        "POLICYD_OIDC_AUDIENCE",
        parse_optional_text,
        None,
        "Audience the JWTs must carry (policyd).",
    )
    oidc_jwks_url: str | None = _setting(
        "POLICYD_OIDC_JWKS_URL", parse_optional_text, None, "Where the issuer's signing keys are."
    )
    oidc_jwks: str | None = _setting(
        "POLICYD_OIDC_JWKS", parse_optional_text, None, "The signing keys inline (JWKS JSON)."
    )
    connectors: Path | None = _setting(
        "POLICYD_CONNECTORS",
        parse_optional_path,
        None,
        "Connector and notifier instances file (connectors.yaml). Default: the built-in "
        "`directory` connector only.",
    )
    delivery: str = _setting(
        "POLICYD_DELIVERY",
        parse_choice("inline", "worker"),
        "inline",
        "`inline`: an API process runs the jobs its change wrote at once; `worker`: they are "
        "left to `policyd worker`.",
    )
    external_users: str = _setting(
        "POLICYD_EXTERNAL_USERS",
        parse_choice("none", "disable", "disable_then_delete"),
        "none",
        "What happens to a guest whose last access ended.",
    )
    external_delete_after: Any = _setting(
        "POLICYD_EXTERNAL_DELETE_AFTER",
        parse_iso_duration,
        timedelta(days=30),
        "With `disable_then_delete`: how long after disabling (ISO-8601 duration).",
    )
    reminders: tuple[timedelta, ...] = _setting(
        "POLICYD_REMINDERS",
        parse_iso_durations,
        (timedelta(days=14), timedelta(days=1)),
        "Expiry reminders this long before access ends (comma-separated ISO-8601 durations; "
        "'' sends none).",
    )
    approval_reminder: timedelta | None = _setting(
        "POLICYD_APPROVAL_REMINDER",
        parse_optional_offset,
        None,
        "Remind approvers of a request waiting for them this often (ISO-8601, e.g. P2D); "
        "none by default. A package's `reminders.approval` replaces it.",
    )
    notification_templates: Path | None = _setting(
        "POLICYD_NOTIFICATION_TEMPLATES",
        parse_optional_path,
        None,
        "Folder of notification templates that replace the shipped ones, by event and "
        "language (docs/notifications.md); checked when a server or worker starts.",
    )
    notification_language: str = _setting(
        "POLICYD_NOTIFICATION_LANGUAGE",
        parse_language,
        "en",
        "Language of the `<event>.txt` templates: recipients whose `language` attribute has "
        "no template of its own get these.",
    )
    public_url: str | None = _setting(
        "POLICYD_PUBLIC_URL",
        parse_public_url,
        None,
        "Base URL of the links in notifications (approve, review, see the request); none: "
        "messages carry no links.",
    )
    job_lease: timedelta = _setting(
        "POLICYD_JOB_LEASE",
        parse_lease,
        timedelta(minutes=1),
        "How long a claimed outbox job is its worker's before another may take it; the "
        "worker renews it while it works on the job (ISO-8601, PT1S to P1D).",
    )
    spool_dir: Path | None = _setting(
        "POLICYD_SPOOL_DIR",
        parse_optional_path,
        None,
        "Folder of the decision-log spool, shared by the servers and drainers of a host. "
        "Default: beside the SQLite file, or a folder in the system's temporary folder named "
        "after the database.",
    )
    decision_log_drain: str | None = _setting(
        "POLICYD_DECISION_LOG_DRAIN",
        parse_optional_choice("external", "thread"),
        None,
        "Who stores the decision-log entries an API process spools: `external` (`policyd "
        "decision-log drain` or `policyd worker` on the same host; the process reports the lag) "
        "or `thread` (a thread of the process). Default: `thread` in `policyd serve`, "
        "`external` in other servers (gunicorn).",
    )
    decision_log_interval: float = _setting(
        "POLICYD_DECISION_LOG_INTERVAL",
        parse_seconds,
        0.5,
        "Seconds between a drainer's passes over the decision-log spool.",
    )
    decision_log_retention: int = _setting(
        "POLICYD_DECISION_LOG_RETENTION",
        parse_count,
        0,
        "Days the decision log keeps an entry; older ones are deleted by `policyd decision-log "
        "prune` (or the worker's periodic task), except those a request or assignment refers "
        "to: on PostgreSQL whole months by dropping their partition, the rest in batches "
        "(docs/storage.md). 0: keep every entry.",
    )
    subject_cache_seconds: float = _setting(
        "POLICYD_SUBJECT_CACHE_SECONDS",
        parse_number,
        2.0,
        "How long a decision may use a subject's directory facts it read (0: no cache).",
    )
    match_memo: int = _setting(
        "POLICYD_MATCH_MEMO",
        parse_count,
        2048,
        "Facts whose matched rules each package compiled into the engine remembers (0: none).",
    )
    resident_packages: int = _setting(
        "POLICYD_RESIDENT_PACKAGES",
        parse_positive,
        250,
        "Packages of the active version held compiled in the engine at once; the least "
        "recently decided is released past it and compiled again on its next decision.",
    )
    max_body_bytes: int = _setting(
        "POLICYD_MAX_BODY_BYTES",
        parse_bytes,
        1024 * 1024,
        "Largest request body the API reads, in bytes; a larger one is a 413 (docs/api.md).",
    )
    disable_plugin_autoload: bool = _setting(
        "POLICYD_DISABLE_PLUGIN_AUTOLOAD",
        parse_flag,
        False,
        "Load only the built-in connectors and notifiers, no third-party entry points.",
    )
    log_level: str = _setting(
        "POLICYD_LOG_LEVEL",
        lambda value: parse_choice("debug", "info", "warning", "error")(value).upper(),
        "INFO",
        "Least severe log records written (debug, info, warning, error).",
    )
    log_format: str = _setting(
        "POLICYD_LOG_FORMAT",
        parse_choice("auto", "json", "text"),
        "auto",
        "`json`: one JSON object per line; `text`: plain lines; `auto`: text on a terminal, "
        "JSON elsewhere. Lines carry the request id (X-Request-ID).",
    )
    prometheus_multiproc_dir: Path | None = _setting(
        "PROMETHEUS_MULTIPROC_DIR",
        parse_optional_path,
        None,
        "prometheus-client's folder for gunicorn's workers; `/metrics` adds their samples up.",
    )
    # Not from the environment: what tests pass in.
    clock: Callable[[], datetime] = field(default=_now, compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings of this process: the environment, then `overrides` (e.g. CLI options;
        None means "not given"). Unknown POLICYD_* variables are logged, with a suggestion."""
        environ = os.environ if environ is None else environ
        known = {f.metadata["env"]: f.name for f in _env_fields()}
        for name in sorted(environ):
            unknown = name not in known and not name.startswith(NOT_SETTINGS)
            if name.startswith(PREFIX) and unknown and name not in _warned:
                _warned.add(name)
                suffixes = {k.removeprefix(PREFIX): k for k in known}
                near = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1)
                hint = f"; did you mean {suffixes[near[0]]}?" if near else ""
                log.warning("unknown setting %s is ignored%s", name, hint)
        values = {known[k]: v for k, v in environ.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._build(values)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Settings:
        """Settings from `{"POLICYD_NAME": value}` (or field names); any other key is refused."""
        by_env = {f.metadata["env"]: f.name for f in _env_fields()}
        names = {f.name for f in dataclasses.fields(cls)}
        # prometheus-client reads this variable from the environment itself, whatever we are
        # given: the setting must say what the library does.
        values = {"prometheus_multiproc_dir": os.environ.get("PROMETHEUS_MULTIPROC_DIR")}
        for key, value in mapping.items():
            name = by_env.get(key, "clock" if key == "POLICYD_CLOCK" else key)
            if name not in names:
                raise SettingError(key, "no such setting")
            values[name] = value
        return cls._build(values)

    @classmethod
    def _build(cls, values: Mapping[str, Any]) -> Settings:
        parsed = {}
        for f in _env_fields():
            if f.name in values:
                try:
                    parsed[f.name] = f.metadata["parse"](values[f.name])
                except (TypeError, ValueError, OverflowError) as err:
                    raise SettingError(f.metadata["env"], str(err)) from None
        if "clock" in values:
            parsed["clock"] = values["clock"]
        return cls(**parsed)

    @staticmethod
    def variable(name: str) -> str:
        """The environment variable of the setting called `name`."""
        return next(f.metadata["env"] for f in _env_fields() if f.name == name)

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` (field names), parsed like everything else."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return self._build(current | changes)

    def configure_logging(self) -> None:
        """Set up this process's log lines (serve, worker, an API under gunicorn)."""
        from policyd import logs

        json_lines = {"json": True, "text": False}.get(self.log_format)
        logs.configure(self.log_level, json_lines=json_lines)

    @property
    def home_dir(self) -> Path:
        return self.home or default_home()

    @property
    def database(self) -> str:
        """The database URL: the setting, or SQLite in `policyd.db` under the home folder."""
        return self.database_url or f"sqlite:///{self.home_dir / 'policyd.db'}"

    @property
    def uses_default_database(self) -> bool:
        return self.database_url is None


def _env_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Settings) if "env" in f.metadata]


def table() -> list[tuple[str, str, str]]:
    """(variable, default as text, meaning) for every setting, for docs/configuration.md."""
    rows = []
    for f in _env_fields():
        rows.append((f.metadata["env"], _shown(f.default), f.metadata["doc"]))
    return rows


def markdown_table() -> str:
    """The settings as the Markdown table of docs/configuration.md."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for env, default, doc in table():
        lines.append(f"| `{env}` | `{default}` | {doc} |")
    return "\n".join(lines) + "\n"


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, timedelta):
        return iso_text(value)
    if isinstance(value, tuple):
        return ",".join(iso_text(v) if isinstance(v, timedelta) else str(v) for v in value) or "''"
    return str(value)
