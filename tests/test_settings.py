"""Settings: every POLICYD_* variable is read in one place, typed, and checked by name."""

from __future__ import annotations

import ast
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from policyd.api import create_app
from policyd.api.context import components
from policyd.cli import main
from policyd.settings import SettingError, Settings, markdown_table, table
from tests.conftest import POLICIES, ROOT, empty_tables

# A value given as text, as the environment gives it, for every setting.
GOOD = {
    "POLICYD_DATABASE_URL": "sqlite:///x.db",
    "POLICYD_HOME": "/srv/policyd",
    "POLICYD_POLICIES": "rules",
    "POLICYD_HOST": "0.0.0.0",
    "POLICYD_PORT": "9090",
    "POLICYD_AUTO_UPGRADE": "yes",
    "POLICYD_TRUSTED_APPS": "crm, hr",
    "POLICYD_SYNC_INTERVAL": "5",
    "POLICYD_TOKEN_CACHE_SECONDS": "0",
    "POLICYD_OIDC_ISSUER": "https://id.example.com",
    "POLICYD_OIDC_AUDIENCE": "policyd",
    "POLICYD_OIDC_JWKS_URL": "https://id.example.com/keys",
    "POLICYD_OIDC_JWKS": '{"keys": []}',
    "POLICYD_CONNECTORS": "connectors.yaml",
    "POLICYD_DELIVERY": "worker",
    "POLICYD_EXTERNAL_USERS": "disable_then_delete",
    "POLICYD_EXTERNAL_DELETE_AFTER": "P7D",
    "POLICYD_REMINDERS": "P1D,P7D",
    "POLICYD_SPOOL_DIR": "spool",
    "POLICYD_JOB_LEASE": "PT30S",
    "POLICYD_APPROVAL_REMINDER": "P2D",
    "POLICYD_NOTIFICATION_TEMPLATES": "templates",
    "POLICYD_NOTIFICATION_LANGUAGE": "de",
    "POLICYD_PUBLIC_URL": "https://access.example.org/",
    "POLICYD_DECISION_LOG_DRAIN": "thread",
    "POLICYD_DECISION_LOG_INTERVAL": "0.25",
    "POLICYD_DECISION_LOG_RETENTION": "90",
    "POLICYD_SUBJECT_CACHE_SECONDS": "1.5",
    "POLICYD_MATCH_MEMO": "0",
    "POLICYD_RESIDENT_PACKAGES": "200",
    "POLICYD_MAX_BODY_BYTES": "65536",
    "POLICYD_DISABLE_PLUGIN_AUTOLOAD": "1",
    "POLICYD_LOG_LEVEL": "debug",
    "POLICYD_LOG_FORMAT": "json",
    "PROMETHEUS_MULTIPROC_DIR": "prom",
}
# A value the setting cannot use, for every setting that can be wrong.
BAD = {
    "POLICYD_PORT": "80000",
    "POLICYD_AUTO_UPGRADE": "maybe",
    "POLICYD_SYNC_INTERVAL": "soon",
    "POLICYD_TOKEN_CACHE_SECONDS": "-1",
    "POLICYD_DELIVERY": "later",
    "POLICYD_EXTERNAL_USERS": "forget",
    "POLICYD_EXTERNAL_DELETE_AFTER": "30 days",
    "POLICYD_REMINDERS": "P1M",
    "POLICYD_JOB_LEASE": "PT0S",
    "POLICYD_APPROVAL_REMINDER": "P1M",
    "POLICYD_NOTIFICATION_LANGUAGE": "english",
    "POLICYD_PUBLIC_URL": "access.example.org",
    "POLICYD_DECISION_LOG_DRAIN": "process",
    "POLICYD_DECISION_LOG_INTERVAL": "0",
    "POLICYD_DECISION_LOG_RETENTION": "-1",
    "POLICYD_SUBJECT_CACHE_SECONDS": "1e400",
    "POLICYD_MATCH_MEMO": "2.5",
    "POLICYD_RESIDENT_PACKAGES": "0",
    "POLICYD_MAX_BODY_BYTES": "0",
    "POLICYD_DISABLE_PLUGIN_AUTOLOAD": "2",
    "POLICYD_LOG_LEVEL": "loud",
    "POLICYD_LOG_FORMAT": "xml",
}


def test_every_setting_has_a_textual_example_here():
    """The examples above cover every setting, so a new one is tested as text too."""
    assert set(GOOD) == {env for env, _, _ in table()}


@pytest.mark.parametrize("variable", sorted(GOOD))
def test_every_setting_given_as_text_is_parsed_to_its_type(variable):
    """A variable as the environment gives it (text) becomes a typed value."""
    settings = Settings.from_env({variable: GOOD[variable]})
    default = Settings()
    changed = [name for name in vars(default) if getattr(settings, name) != getattr(default, name)]
    assert [Settings.variable(name) for name in changed] == [variable]
    value = getattr(settings, changed[0])
    assert not isinstance(value, str) or variable in _TEXT_SETTINGS


_TEXT_SETTINGS = {
    "POLICYD_DATABASE_URL",
    "POLICYD_POLICIES",
    "POLICYD_HOST",
    "POLICYD_OIDC_ISSUER",
    "POLICYD_OIDC_AUDIENCE",
    "POLICYD_OIDC_JWKS_URL",
    "POLICYD_OIDC_JWKS",
    "POLICYD_DELIVERY",
    "POLICYD_EXTERNAL_USERS",
    "POLICYD_DECISION_LOG_DRAIN",
    "POLICYD_LOG_LEVEL",
    "POLICYD_LOG_FORMAT",
    "POLICYD_NOTIFICATION_LANGUAGE",
    "POLICYD_PUBLIC_URL",
}


def test_numbers_lists_and_durations_get_their_types():
    """Numbers, lists and durations given as text are numbers, tuples and timedeltas."""
    settings = Settings.from_env(GOOD)
    assert settings.sync_interval == 5.0
    assert settings.port == 9090
    assert settings.trusted_apps == ("crm", "hr")
    assert settings.reminders == (timedelta(days=7), timedelta(days=1))
    assert settings.external_delete_after == timedelta(days=7)
    assert settings.auto_upgrade is True
    assert settings.disable_plugin_autoload is True


@pytest.mark.parametrize("variable", sorted(BAD))
def test_a_bad_value_is_refused_naming_the_variable(variable):
    """A value the service cannot use raises SettingError that names the variable and the
    value."""
    with pytest.raises(SettingError) as caught:
        Settings.from_env({variable: BAD[variable]})
    assert caught.value.setting == variable
    assert str(caught.value).startswith(f"{variable}: ")


def test_a_textual_sync_interval_serves_requests(database_url):
    """POLICYD_SYNC_INTERVAL given as text (as the environment gives it) lets every
    authenticated request through: it once made each one a 500."""
    app = create_app(
        {
            "POLICYD_DATABASE_URL": database_url,
            "POLICYD_POLICIES": str(POLICIES),
            "POLICYD_AUTO_UPGRADE": "true",
            "POLICYD_SYNC_INTERVAL": "5",
            "POLICYD_TOKEN_CACHE_SECONDS": "5",
            "POLICYD_SUBJECT_CACHE_SECONDS": "2",
            "POLICYD_MATCH_MEMO": "16",
        }
    )
    try:
        from policyd.services.actor import SYSTEM
        from policyd.services.tokens import TokenService

        with components(app).database.session() as session:
            _, plain = TokenService(session).create(SYSTEM, "root", "admin", now=Settings().clock())
        response = app.test_client().get(
            "/v1/policy-versions", headers={"Authorization": f"Bearer {plain}"}
        )
        assert response.status_code == 200, response.get_json()
    finally:
        components(app).decision_log.close()
        components(app).runtime.close()
        empty_tables(components(app).database)
        components(app).database.dispose()


def test_a_mapping_with_an_unknown_setting_is_refused():
    """A misspelt setting handed to create_app is an error, not silently ignored."""
    with pytest.raises(SettingError, match="POLICYD_SYNC_INTERVALL: no such setting"):
        Settings.from_mapping({"POLICYD_SYNC_INTERVALL": 5})


def test_an_unknown_variable_is_logged_with_the_closest_name(caplog):
    """An unknown POLICYD_* variable in the environment is a warning naming the setting it
    probably meant; the test suite's own variables are not."""
    with caplog.at_level(logging.WARNING, logger="policyd.settings"):
        Settings.from_env({"POLICYD_SYNC_INTERVALS": "5", "POLICYD_TEST_PG_URL": "x"})
    assert "POLICYD_SYNC_INTERVALS is ignored; did you mean POLICYD_SYNC_INTERVAL?" in caplog.text
    assert "POLICYD_TEST_PG_URL" not in caplog.text


@pytest.mark.parametrize("command", [["serve"], ["worker", "--once"]])
def test_a_bad_variable_stops_a_process_with_exit_2_naming_it(runner, command, monkeypatch):
    """`policyd serve` and `policyd worker` stop with exit 2 and the variable's name."""
    monkeypatch.setenv("POLICYD_SYNC_INTERVAL", "soon")
    result = runner.invoke(main, command)
    assert result.exit_code == 2
    assert "POLICYD_SYNC_INTERVAL: 'soon' is not a number" in result.output
    assert "Traceback" not in result.output


def test_a_bad_option_is_named_as_the_option(runner, monkeypatch, tmp_path):
    """A CLI option's bad value names the option, not the variable behind it."""
    result = runner.invoke(main, ["worker", "--once", "--external-delete-after", "soon"])
    assert result.exit_code == 2
    assert "--external-delete-after" in result.output


def test_the_configuration_page_lists_every_setting():
    """docs/configuration.md has the generated table of every setting, default and meaning."""
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert markdown_table() in page


def test_only_the_settings_module_reads_the_environment():
    """No module of policyd but settings.py reads os.environ or os.getenv."""
    readers = []
    for path in sorted((ROOT / "src" / "policyd").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in ("environ", "getenv", "putenv")
            ):
                readers.append(str(Path(path).relative_to(ROOT)))
    assert sorted(set(readers)) == ["src/policyd/settings.py"]
