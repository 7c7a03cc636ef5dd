"""Messages from Jinja templates: shipped defaults under an operator's own, checked at load."""

from __future__ import annotations

import functools
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PrefixLoader,
    StrictUndefined,
    Template,
    TemplateError,
)
from jinja2.sandbox import SandboxedEnvironment

from policyd.notify.sample import EVENTS, sample

SHIPPED = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"
# <event>.txt, <event>.<lang>.txt, and the same with .html
NAME = re.compile(
    r"^(?P<event>[a-z_]+)(?:\.(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*))?\.(?P<ext>txt|html)$"
)
PARTIAL = re.compile(r"^(_.*|layout)\.(txt|html)$")  # included or extended, never sent alone


@dataclass(frozen=True)
class TemplateProblem:
    """One bad template: where, and what is wrong."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


class TemplateProblemsError(ValueError):
    """Raised with every bad template found when the templates are loaded."""

    def __init__(self, problems: list[TemplateProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Rendered:
    """A message: its subject line, plain text and, if its template has one, HTML."""

    subject: str
    text: str
    html: str | None = None


class Templates:
    """Every event's templates, by language: the operator's folder first, then the shipped ones.

    All are compiled and rendered once with the event's sample variables when loaded, so a
    syntax error, a misspelt variable or an unsafe attribute stops the process at start-up
    (as file:line) instead of a notification later.
    """

    def __init__(self, folder: str | Path | None = None, language: str = DEFAULT_LANGUAGE):
        self.folder = Path(folder) if folder is not None else None
        self.language = language
        folders = [SHIPPED] if self.folder is None else [self.folder, SHIPPED]
        # "<n>/<name>": that file of the n-th folder (an event's own template); a plain name
        # (a layout a template extends, a part it includes): the operator's, else the shipped.
        exact = PrefixLoader({str(n): FileSystemLoader(str(f)) for n, f in enumerate(folders)})
        self._env = SandboxedEnvironment(
            loader=ChoiceLoader([exact, *(FileSystemLoader(str(f)) for f in folders)]),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name and name.endswith(".html")),
            keep_trailing_newline=True,
            trim_blocks=True,  # a line holding only a block tag leaves no empty line
        )
        # (event, language) -> (text, html or None); "" is the default language
        self._chosen: dict[tuple[str, str], tuple[Template, Template | None]] = {}
        problems: list[TemplateProblem] = []
        if self.folder is not None and not self.folder.is_dir():
            problems.append(TemplateProblem(str(self.folder), 0, "no such folder"))
        else:
            for n in reversed(range(len(folders))):  # the operator's replace the shipped ones
                problems += self._load(folders[n], str(n))
        missing = sorted(e for e in EVENTS if (e, "") not in self._chosen)
        problems += [TemplateProblem(str(SHIPPED), 0, f"no {e}.txt") for e in missing]
        if problems:
            raise TemplateProblemsError(problems)

    def _load(self, origin: Path, prefix: str) -> list[TemplateProblem]:
        problems = []
        for path in sorted(origin.iterdir()):
            if not path.is_file() or PARTIAL.match(path.name):
                continue
            match = NAME.match(path.name)
            if match is None or match["event"] not in EVENTS:
                known = ", ".join(sorted(EVENTS))
                message = (
                    f"not a template of an event (<event>[.<lang>].txt or .html; events: {known})"
                )
                problems.append(TemplateProblem(str(path), 0, message))
                continue
            if match["ext"] == "html":  # taken with its text
                if not (origin / (path.name.removesuffix(".html") + ".txt")).is_file():
                    message = f"an HTML template needs its text beside it ({path.stem}.txt)"
                    problems.append(TemplateProblem(str(path), 0, message))
                continue
            key = (match["event"], match["lang"] or "")
            try:
                text = self._check(f"{prefix}/{path.name}", match["event"])
                html = None
                html_name = path.name.removesuffix(".txt") + ".html"
                if (origin / html_name).is_file():  # the HTML of the same folder and language
                    html = self._check(f"{prefix}/{html_name}", match["event"], subject=False)
            except TemplateError as err:
                problems.append(_problem(err, origin / path.name))
                continue
            self._chosen[key] = (text, html)
        return problems

    def _check(self, name: str, event: str, *, subject: bool = True) -> Template:
        """The compiled template, rendered with the event's sample variables, with links
        and without (no public URL set)."""
        template = self._env.get_template(name)
        for links in (True, False):
            first, _ = _split(template.render(sample(event, links=links)))
            if subject and not first:
                raise TemplateError("the first line, the subject, is empty")
        return template

    def render(
        self, event: str, values: Mapping[str, Any], language: str | None = None
    ) -> Rendered:
        """The message of `event` in `language` (or its primary subtag), else the default one;
        the templates' `language` variable is the language of the template chosen.

        Raises:
            KeyError: no such event.
            jinja2.TemplateError: a value the sample did not foresee broke the template.
        """
        tag = next((t for t in _tags(language) if (event, t) in self._chosen), "")
        if event not in EVENTS:
            raise KeyError(event)
        text, html = self._chosen[(event, tag)]
        values = {**values, "language": tag or self.language}
        subject, body = _split(text.render(values))
        return Rendered(" ".join(subject.split()), body, html.render(values) if html else None)

    def languages(self, event: str) -> list[str]:
        """The languages `event` has its own templates in ("" for the default)."""
        return sorted(tag for e, tag in self._chosen if e == event)


@functools.cache
def shipped_templates(language: str = DEFAULT_LANGUAGE) -> Templates:
    """The shipped templates alone, loaded once per process (every app of a test run)."""
    return Templates(None, language)


def _tags(language: str | None) -> list[str]:
    if not language:
        return []
    return list(dict.fromkeys([language, language.split("-")[0]]))


def _split(rendered: str) -> tuple[str, str]:
    """(subject, body): the first line is the subject, the rest after blank lines the body."""
    subject, _, body = rendered.partition("\n")
    return subject.strip(), body.lstrip("\n")


def _problem(err: TemplateError, path: Path) -> TemplateProblem:
    """The file and line of a template error: a syntax error knows its own; an error while
    rendering (an undefined variable, an unsafe call) is found in the traceback."""
    filename = getattr(err, "filename", None)
    line = getattr(err, "lineno", None)
    if line is None:
        frames = [
            f
            for f in traceback.extract_tb(err.__traceback__)
            if f.filename.endswith((".txt", ".html"))
        ]
        if frames:
            filename, line = frames[-1].filename, frames[-1].lineno
    return TemplateProblem(
        filename or str(path), line or 0, f"{type(err).__name__}: {err.message or err}"
    )
