"""Notification templates: the shipped ones render strictly, an operator's folder replaces
them by event and language, and a bad template is refused at load as file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from policyd.cli import main
from policyd.notify.sample import EVENTS, sample
from policyd.notify.template import SHIPPED, TemplateProblemsError, Templates


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("links", [True, False])
def test_every_shipped_template_renders_with_its_events_variables(event, links):
    """Each event's shipped text (and HTML, where shipped) renders with StrictUndefined."""
    rendered = Templates().render(event, sample(event, links=links))
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.text.strip()
    link = sample(event, links=links)["link"]
    if link is not None:
        assert link in rendered.text
    if (SHIPPED / f"{event}.html").exists():
        assert rendered.html is not None and rendered.html.startswith("<!DOCTYPE html>")


def test_html_is_escaped_and_text_is_not():
    """A requester's justification with markup is escaped in the HTML part only."""
    values = sample("approval_needed")
    values["request"] = {**values["request"], "justification": "<script>x</script>"}
    rendered = Templates().render("approval_needed", values)
    assert "<script>x</script>" in rendered.text
    assert rendered.html is not None and "&lt;script&gt;x&lt;/script&gt;" in rendered.html
    assert "<script>" not in rendered.html


def test_a_file_in_the_folder_replaces_the_shipped_template(tmp_path: Path):
    """approval_needed.txt in the operator's folder is used; other events stay shipped, and
    the replaced event has no HTML part unless the folder has one too."""
    (tmp_path / "approval_needed.txt").write_text(
        "[ACME] {{ request.package_name }} for {{ request.subject_name }}\n\n"
        "Please decide: {{ link }}\n"
    )
    templates = Templates(tmp_path)
    rendered = templates.render("approval_needed", sample("approval_needed"))
    assert rendered.subject == "[ACME] Payroll approver for Alan Turing"
    assert rendered.text == f"Please decide: {sample('approval_needed')['link']}\n"
    assert rendered.html is None  # the shipped HTML would say something else
    assert templates.render("access_expiring", sample("access_expiring")).html is not None


def test_a_language_falls_back_to_its_primary_tag_then_the_default(tmp_path: Path):
    """de-CH finds access_expiring.de.txt; fr has none and gets the default language."""
    (tmp_path / "access_expiring.de.txt").write_text(
        "Ihr Zugang zu {{ assignment.package_name }} endet am {{ assignment.expires }}\n\n-\n"
    )
    templates = Templates(tmp_path)
    values = sample("access_expiring")
    german = templates.render("access_expiring", values, "de-CH")
    assert german.subject == "Ihr Zugang zu Payroll approver endet am 2026-03-31 17:00 UTC"
    assert german.html is None
    assert templates.render("access_expiring", values, "fr").subject.startswith("Your access")
    assert templates.languages("access_expiring") == ["", "de"]


def test_a_layout_in_the_folder_brands_every_shipped_html_part(tmp_path: Path):
    """layout.html in the operator's folder is what the shipped HTML templates extend."""
    (tmp_path / "layout.html").write_text(
        "<html><body><img src='https://acme.example/logo.png'>{% block body %}{% endblock %}"
        "{% if link %}<a href='{{ link }}'>{% block action %}{% endblock %}</a>{% endif %}"
        "</body></html>"
    )
    rendered = Templates(tmp_path).render("review_needed", sample("review_needed"))
    assert rendered.html is not None and "acme.example/logo.png" in rendered.html
    assert ">Review them</a>" in rendered.html


@pytest.mark.parametrize(
    ("name", "text", "line", "error"),
    [
        ("approval_needed.txt", "Subject\n\n{% if request %}\n", 3, "TemplateSyntaxError"),
        (
            "access_removed.txt",
            "Gone\n\nHi {{ recipient.name }},\n{{ asignment.id }}\n",
            4,
            "'asignment' is undefined",
        ),
        (
            "review_needed.fr.txt",
            "Revue\n\n{{ campaign.id.__class__.__mro__ }}\n",
            3,
            "SecurityError",
        ),
        ("access_granted.txt", "\n\nno subject\n", 0, "the subject, is empty"),
    ],
)
def test_a_bad_template_is_refused_at_load_with_file_and_line(tmp_path, name, text, line, error):
    """A syntax error, a misspelt variable, an unsafe attribute (the sandbox) or an empty
    subject stops the load, naming the file and the line."""
    (tmp_path / name).write_text(text)
    with pytest.raises(TemplateProblemsError) as raised:
        Templates(tmp_path)
    [problem] = raised.value.problems
    assert (problem.file, problem.line) == (str(tmp_path / name), line)
    assert error in problem.message


def test_a_file_that_names_no_event_is_refused(tmp_path: Path):
    """A misspelt event name is an error, not a template nobody uses; partials start with _."""
    (tmp_path / "aproval_needed.txt").write_text("x\n")
    (tmp_path / "_footer.txt").write_text("-- ACME\n")
    (tmp_path / "review_needed.html").write_text("<p>only HTML</p>")
    with pytest.raises(TemplateProblemsError) as raised:
        Templates(tmp_path)
    messages = sorted((Path(p.file).name, p.message.split(" (")[0]) for p in raised.value.problems)
    assert messages == [
        ("aproval_needed.txt", "not a template of an event"),
        ("review_needed.html", "an HTML template needs its text beside it"),
    ]


def test_policyd_notifications_check_exits_1_with_file_and_line(tmp_path: Path):
    """The CLI check prints each problem as file:line and exits 1; a good folder is ok."""
    runner = CliRunner()
    (tmp_path / "access_removed.txt").write_text("Ended\n\n{{ assignment.nope }}\n")
    result = runner.invoke(main, ["notifications", "check", "--templates", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path / 'access_removed.txt'}:3: UndefinedError" in result.output
    (tmp_path / "access_removed.txt").write_text("Ended\n\n{{ assignment.package_name }}\n")
    result = runner.invoke(main, ["notifications", "check", "--templates", str(tmp_path)])
    assert result.exit_code == 0 and "ok   access_removed (en)" in result.output


def test_the_language_variable_is_the_chosen_templates(tmp_path: Path):
    """A recipient in fr-CA with no French template gets the default language's, and its
    HTML says lang="en"; with a French one, lang is fr."""
    values = sample("review_needed")
    assert 'lang="en"' in (Templates().render("review_needed", values, "fr-CA").html or "")
    (tmp_path / "review_needed.fr.txt").write_text("Revue {{ language }}\n\n.\n")
    (tmp_path / "review_needed.fr.html").write_text('{% extends "layout.html" %}')
    french = Templates(tmp_path).render("review_needed", values, "fr-CA")
    assert french.subject == "Revue fr" and 'lang="fr"' in (french.html or "")
