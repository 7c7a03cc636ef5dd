"""docs/notifications.md: its template example renders as shown, and its tables name every
event and variable; docs/rules.md's reminders example loads."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from policyd.notify.sample import EVENTS, LINKS, sample
from policyd.notify.template import Templates
from policyd.rules import load_texts
from tests.conftest import ROOT

PAGE = (ROOT / "docs" / "notifications.md").read_text(encoding="utf-8")
EXAMPLE = re.compile(r"```jinja\n\{# (\S+) -#\}\n(.*?)```\n.*?```text\n(.*?)```", re.DOTALL)


def test_the_documented_template_renders_as_shown(tmp_path: Path):
    """The German example, in a templates folder, renders the sample values as the page shows."""
    [(name, template, shown)] = EXAMPLE.findall(PAGE)
    (tmp_path / name).write_text(template, encoding="utf-8")
    event, language = name.split(".")[:2]
    rendered = Templates(tmp_path).render(event, sample(event), language)
    assert f"{rendered.subject}\n\n{rendered.text}" == shown
    assert rendered.html is None


def test_the_page_names_every_event_and_where_its_link_points():
    """The events table has a row per event, with its link's path."""
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| .*? \| `([^`]+)` \|$", PAGE, re.MULTILINE))
    assert rows == {event: LINKS[event].replace("{id}", "<id>") for event in EVENTS}


def test_the_page_lists_every_variable_of_every_event():
    """Each variable a template is given (and each field of its objects) is documented."""
    section = PAGE.split("### Variables")[1].split("### Example")[0]
    for event in EVENTS:
        for name, value in sample(event).items():
            assert f"`{name}`" in section, name
            fields = value[0] if isinstance(value, list) else value
            for field in fields if isinstance(fields, dict) else ():
                assert f"`{field}`" in section, f"{name}.{field}"


def test_the_documented_package_reminders_load():
    """docs/rules.md's reminders-tour sets 7 and 1 days before expiry and approvals every 2."""
    page = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    block = next(
        b for b in re.findall(r"```yaml\n(.*?)```", page, re.DOTALL) if "reminders-tour" in b
    )
    reminders = load_texts({"tour.yaml": block}).package("reminders-tour").reminders
    assert reminders.expiry == (timedelta(days=7), timedelta(days=1))
    assert reminders.approval == timedelta(days=2)
