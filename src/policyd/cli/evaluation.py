"""`policyd eval`: what a subject asking for a package would get, from local rule files or a
published version with the directory's facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from click.core import ParameterSource
from marshmallow import ValidationError

from policyd.cli.base import (
    DEFAULT_DIR,
    _fail,
    _load,
    _session,
    _shown,
    main,
    settings_for,
)
from policyd.domain import Decision, RequestOptions, Subject
from policyd.rules import (
    Bundle,
    InvalidInputError,
    Policy,
    ProblemsError,
    UnknownPackageError,
)
from policyd.rules.condition import as_number
from policyd.rules.inputs import RequestSchema, SubjectSchema
from policyd.rules.source import flatten_messages, parse_document


@main.command("eval")
@click.argument("package")
@click.option(
    "-p",
    "--policies",
    "directory",
    default=DEFAULT_DIR,
    type=click.Path(file_okay=False, path_type=Path),
    show_default=True,
    help="Rule files to evaluate (the default source).",
)
@click.option(
    "--live",
    is_flag=True,
    help="Evaluate the active published version, with the subject's facts from the directory.",
)
@click.option(
    "--version",
    "version_id",
    metavar="ID",
    help="Evaluate this published version, with the subject's facts from the directory.",
)
@click.option(
    "--database-url",
    help="With --live or --version: the database [env: POLICYD_DATABASE_URL; default: SQLite "
    "in policyd.db under POLICYD_HOME].",
)
@click.option(
    "--subject", "subject_file", type=click.File("r"), help="Subject as JSON/YAML; - reads stdin."
)
@click.option("--id", "subject_id", help="Subject id (when no --subject file is given).")
@click.option("--email")
@click.option("--type", "user_type", type=click.Choice(["member", "guest"]))
@click.option("--group", "groups", multiple=True, help="Group the subject is in (repeatable).")
@click.option("--holds", multiple=True, help="Package the subject already holds (repeatable).")
@click.option("--department")
@click.option("--job-title")
@click.option("--employee-type")
@click.option("--manager")
@click.option("--organization")
@click.option("--attr", "attrs", multiple=True, help="Extra attribute KEY=VALUE (repeatable).")
@click.option("--duration", help="Requested duration, ISO-8601 (e.g. PT4H).")
@click.option("--justification")
@click.option(
    "--answer",
    "answers",
    multiple=True,
    help="Answer to a question of the package, ID=VALUE (repeatable; numbers read as numbers).",
)
@click.option("--now", "now_text", help="Evaluate at this ISO-8601 time (default: current time).")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@click.pass_context
def eval_command(
    ctx: click.Context,
    package: str,
    directory: Path,
    live: bool,
    version_id: str | None,
    database_url: str | None,
    subject_file,
    subject_id,
    as_json,
    **flags,
) -> None:
    """Show what would happen if a subject requested PACKAGE now.

    By default this reads only local files: the rule files in --policies, and only the
    subject facts given here (nothing from a database or the directory). With --live or
    --version ID it evaluates a version published in the database (--database-url) and
    takes the subject's facts from its directory, packages held from its live assignments;
    facts given here override or add to them, as for an admin in POST /v1/decisions.
    Nothing is written, not even to the decision log.
    """
    stored = live or version_id is not None
    if live and version_id is not None:
        raise click.UsageError("give --live or --version ID, not both")
    if stored and ctx.get_parameter_source("directory") is not ParameterSource.DEFAULT:
        raise click.UsageError("--policies reads local files; --live and --version do not")
    subject = _subject(subject_file, subject_id, flags)
    request = _request(flags)
    now = _now(flags.pop("now_text"))
    if stored:
        given_facts = subject_file is not None or any(flags.get(name) for name in _FACT_FLAGS)
        bundle, subject = _published(database_url, version_id, subject, given_facts)
    else:
        bundle = _load(directory)
    policy = Policy(bundle)
    try:
        decision = policy.decide(package, subject, request, now=now)
    except UnknownPackageError:
        known = ", ".join(sorted(bundle.packages))
        raise click.BadParameter(f"unknown package {package!r}; known: {known}") from None
    except InvalidInputError as err:
        raise click.BadParameter(err.message, param_hint=err.field) from None
    finally:
        policy.close()
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2))
    else:
        click.echo(_explain(decision))


_FACT_FLAGS = (
    "email",
    "user_type",
    "groups",
    "holds",
    "department",
    "job_title",
    "employee_type",
    "manager",
    "organization",
    "attrs",
)


def _published(
    database_url: str | None, version_id: str | None, supplied: Subject, given_facts: bool
) -> tuple[Bundle, Subject]:
    """The stored version (the active one without `version_id`) and the directory's subject,
    with the facts given on the command line laid over it, as the API does for an admin."""
    from policyd.services.directory import DirectoryService
    from policyd.services.versions import VersionService

    # Settings are read only here: evaluating local files needs none.
    database_url = settings_for(database_url=database_url).database
    with _session(database_url) as session:
        versions = VersionService(session)
        if version_id is None:
            version_id = versions.active_id()
            if version_id is None:
                raise click.ClickException(
                    f"no policy version is active in {_shown(database_url)}; publish one first"
                )
        try:
            bundle = versions.bundle(version_id)
        except ProblemsError as err:
            click.echo(f"version {version_id} does not load with this policyd:", err=True)
            _fail(err.problems)
        subject = DirectoryService(session).resolve_subject(
            supplied.id, supplied if given_facts else None, trusted=True
        )
    return bundle, subject


def _subject(subject_file, subject_id: str | None, flags: dict) -> Subject:
    if subject_file is not None:
        name = getattr(subject_file, "name", "<stdin>")
        try:
            document = parse_document(subject_file.read(), name)
            return SubjectSchema().load(document.data if document.data is not None else {})
        except ProblemsError as err:
            _fail(err.problems)
        except ValidationError as err:
            _fail([document.problem(p, m) for p, m in flatten_messages(err.messages)])
    if not subject_id:
        raise click.UsageError("give --subject FILE or at least --id")
    raw: dict = {"id": subject_id}
    mapping = {
        "email": "email",
        "user_type": "type",
        "department": "department",
        "job_title": "jobTitle",
        "employee_type": "employeeType",
        "manager": "manager",
        "organization": "organization",
    }
    for flag, key in mapping.items():
        if flags.get(flag):
            raw[key] = flags[flag]
    raw["groups"] = list(flags.get("groups", ()))
    raw["packages"] = list(flags.get("holds", ()))
    attributes = {}
    for item in flags.get("attrs", ()):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--attr")
        attributes[key] = value
    raw["attributes"] = attributes
    try:
        return SubjectSchema().load(raw)
    except ValidationError as err:
        message = "; ".join(
            f"{'.'.join(map(str, p))}: {m}" for p, m in flatten_messages(err.messages)
        )
        raise click.UsageError(message) from None


def _request(flags: dict) -> RequestOptions:
    raw: dict = {k: flags[k] for k in ("duration", "justification") if flags.get(k)}
    for item in flags.get("answers", ()):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not ID=VALUE", param_hint="--answer")
        number = as_number(value)
        answer = value if number is None else int(number) if number.is_integer() else number
        raw.setdefault("answers", {})[key] = answer
    try:
        return RequestSchema().load(raw)
    except ValidationError as err:
        field, messages = next(iter(err.messages.items()))
        raise click.BadParameter(" ".join(messages), param_hint=f"--{field}") from None


def _now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 date-time", param_hint="--now"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _explain(decision: Decision) -> str:
    data = decision.to_dict()
    lines = [
        f"decision  {data['decision']}",
        f"package   {data['package']}",
        *(
            [f"template  {data['template']['id']}  (row {data['template']['row']})"]
            if data["template"]
            else []
        ),
        f"rule      {data['rule'] or '-'}  (matched: {', '.join(data['matched']) or 'none'})",
        f"reason    {data['reason']}",
        f"version   {data['version']}",
        f"now       {data['now']}",
    ]
    if data["lifetime"]:
        life = data["lifetime"]
        lines.append(f"expires   {life['expires_at'] or 'never'}  ({life['explanation']})")
    for number, stage in enumerate(data["approval"]["stages"], start=1):
        who = ", ".join(stage["resolved"]) or "(no approver resolved)"
        escalate = f", then {', '.join(stage['escalate_to'])}" if stage["escalate_to"] else ""
        lines.append(f"stage {number}   {who} within {stage['timeout']}{escalate}")
    if data["approval"]["justification_required"]:
        lines.append("the requester must give a justification")
    return "\n".join(lines)
