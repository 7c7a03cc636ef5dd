"""`policyd diff`: what changed between two sets of rules (folders, git revisions, versions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from policyd.cli.base import DEFAULT_DIR, _session, main, settings_for
from policyd.rules import Bundle, ProblemsError, load_bundle
from policyd.rules.diff import diff_bundles
from policyd.rules.diff_text import render_markdown, render_text
from policyd.rules.revision import RevisionError, load_revision, repository_path, resolve_commit

TROUBLE = 2  # like diff(1): 0 the same, 1 different, 2 could not compare
ACTIVE = "active"  # the version the service decides with now


class DiffError(click.ClickException):
    exit_code = TROUBLE


@main.command("diff")
@click.argument("old")
@click.argument("new", required=False)
@click.option(
    "-p",
    "--policies",
    default=DEFAULT_DIR,
    show_default=True,
    help="The rules folder: NEW when it is not given, and the folder a bare git REV reads.",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "--exit-code",
    is_flag=True,
    help="Exit 1 when there are effective changes and 0 when there are none (like git diff).",
)
@click.option(
    "--database-url",
    help="For version ids: the database [env: POLICYD_DATABASE_URL; default: SQLite in "
    "policyd.db under POLICYD_HOME].",
)
def diff_command(
    old: str, new: str | None, policies: str, output: str, exit_code: bool, database_url
) -> None:
    """Show what changed from OLD to NEW, package by package, rule by rule, field by field.

    Each side is a folder of rule files, a git revision of the repository around the current
    folder (REV reads the --policies folder at REV; REV:PATH reads PATH from the top of the
    repository), the id of a published version, or `active` for the version the service
    decides with now. NEW defaults to the --policies folder.
    Reformatting, key order and comments are no effective change. Exit status 2 when a side
    cannot be read.
    """
    before, old_label = _side(old, policies, database_url)
    after, new_label = _side(new if new is not None else policies, policies, database_url)
    result = diff_bundles(before, after, old_label=old_label, new_label=new_label)
    if output == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif output == "markdown":
        click.echo(render_markdown(result), nl=False)
    else:
        click.echo(render_text(result))
    if exit_code and result.effective:
        sys.exit(1)


def _side(ref: str, policies: str, database_url: str | None) -> tuple[Bundle, str]:
    """The bundle `ref` names and a label for it: a folder, a git revision, or a version id."""
    cwd = Path.cwd()
    if Path(ref).is_dir():
        bundle = _loaded(lambda: load_bundle(ref))
        return bundle, f"{ref} ({bundle.version.id})"
    revision, colon, path = ref.partition(":")
    if not colon:
        try:
            is_revision = resolve_commit(cwd, revision) is not None
        except RevisionError:  # no git here: it can still be a version id
            is_revision = False
        if not is_revision:
            return _stored(ref, database_url)
    try:
        path = path if colon else repository_path(cwd, policies)
    except RevisionError as err:
        raise DiffError(str(err)) from None
    bundle = _loaded(lambda: load_revision(cwd, revision, path))
    return bundle, f"{revision}:{path} ({bundle.version.id})"


def _loaded(load) -> Bundle:
    try:
        return load()
    except ProblemsError as err:
        for problem in err.problems:
            click.echo(str(problem), err=True)
        raise DiffError(
            f"{len(err.problems)} error(s): cannot compare rules that do not load"
        ) from None
    except RevisionError as err:
        raise DiffError(str(err)) from None


def _stored(version_id: str, database_url: str | None) -> tuple[Bundle, str]:
    """A published version by id, or the active one for `active`."""
    from policyd.services.errors import NotFoundError
    from policyd.services.versions import VersionService

    url = settings_for(database_url=database_url).database
    try:
        with _session(url) as session:
            service = VersionService(session)
            label = f"version {version_id}"
            if version_id == ACTIVE:
                version_id = service.active_id() or ""
                if not version_id:
                    raise DiffError("no policy version is active in the database")
                label = f"active version {version_id}"
            try:
                service.get(version_id)
            except NotFoundError:
                raise DiffError(
                    f"{version_id!r} is not a folder, a git revision or a published version"
                ) from None
            return _loaded(lambda: service.bundle(version_id)), label
    except DiffError:
        raise
    except click.ClickException as err:
        raise DiffError(
            f"{version_id!r} is not a folder or a git revision, and no version can be read: "
            f"{err.message}"
        ) from None
