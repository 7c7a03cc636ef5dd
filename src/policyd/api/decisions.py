"""POST /v1/decisions (answered in the request pipeline) and the decision log."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Response
from flask.views import MethodView
from marshmallow import ValidationError
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session
from webargs.core import is_json
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_input_stream

from policyd.api import context
from policyd.api.auth import AuthError, authenticate, check_role, guard, unknown_query
from policyd.api.blueprint import Blueprint
from policyd.api.errors import (
    DATA_ERROR,
    INTERNAL_ERROR,
    ApiErrorSchema,
    error_body,
    input_error_body,
    json_response,
    service_error_body,
    too_large_body,
)
from policyd.api.parser import BodyError, SchemaLoader, load_json
from policyd.api.pipeline import after_response, note_outcome
from policyd.api.schemas import (
    DecisionInSchema,
    DecisionOutSchema,
    DecisionQuerySchema,
    DecisionRecordSchema,
)
from policyd.domain import RequestOptions
from policyd.services.decision_log import compact_encoder
from policyd.services.decisions import DECIDERS, DecisionService, LoggedDecision
from policyd.services.errors import ServiceError

blp = Blueprint("decisions", __name__, url_prefix="/v1/decisions", description="Decisions")

PATH = "/v1/decisions"
# The one validator of a decision's input: the OpenAPI document is generated from it (the view
# below) and DecisionRoute loads every body with it.
DECISION_IN = DecisionInSchema()
_LOAD = SchemaLoader(DECISION_IN)  # DECISION_IN.load, its walk precomputed (api/parser.py)
_encode = compact_encoder()
_UNAUTHENTICATED = (("WWW-Authenticate", 'Bearer realm="policyd"'),)
_NO_OPTIONS = RequestOptions()  # a body without "request" (frozen: one serves every call)


def service() -> DecisionService:
    components = context.components()
    return DecisionService(
        context.session,  # opened only when needed: most decisions need no database
        context.runtime(),
        log=components.decision_log,
        subjects=components.subjects,
    )


def decision_json(logged: LoggedDecision) -> str:
    """{"decision_id", "subject_id", **result} as compact JSON, reusing the result's text."""
    head = _encode({"decision_id": logged.id, "subject_id": logged.subject.id})
    return f"{head[:-1]},{logged.result_json[1:]}"


class DecisionRoute:
    """The one implementation of POST /v1/decisions: a WSGI handler the request pipeline
    calls (api/pipeline.py) after its app-wide steps, without Flask's dispatch, which cost
    more CPU than the decision. It takes the steps of every route through the same functions:
    `authenticate` (401), `check_role` with DECIDERS (403), `unknown_query` (422), the bounded
    JSON reader `load_json` (400), DECISION_IN (422 naming the field), DecisionService.decide
    (its `authorize`, 403/404), and the error bodies of api/errors.py.
    """

    def __init__(self, app: Flask):
        self.app = app
        self.components = context.components(app)
        self.settings = self.components.settings
        self.limit: int | None = app.config.get("MAX_CONTENT_LENGTH")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]):
        opened: list[Session] = []

        def session() -> Session:
            if not opened:
                opened.append(self.components.database.session())
            return opened[0]

        try:
            answer = self._answer(environ, session)
        finally:
            for each in opened:
                each.close()
        if isinstance(answer, Response):
            return answer(environ, start_response)
        outcome, payload = answer
        note_outcome(environ, outcome)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        start_response("200 OK", headers)
        return [payload]

    def _answer(
        self, environ: dict[str, Any], session: Callable[[], Session]
    ) -> tuple[str, bytes] | Response:
        """(outcome, answer) of a decision, or the error answer, in the order of every route:
        authentication, role, query, body, then the service's checks."""
        components = self.components
        try:
            now = self.settings.clock()
            defer = partial(after_response, environ)
            actor = authenticate(
                environ.get("HTTP_AUTHORIZATION", ""), components, session, now, defer
            )
            check_role(actor, DECIDERS)
            refused = self._refused_query(environ)
            if refused is not None:
                return refused
            data = self._input(environ)
            if isinstance(data, Response):
                return data
            sync = components.sync
            if sync.claim():  # the poll runs once the answer is sent: no decision waits on it
                defer(sync.poll)
            subject = data["subject"]
            logged = DecisionService(
                session,
                components.runtime,
                log=components.decision_log,
                subjects=components.subjects,
            ).decide(
                actor,
                data["package"],
                subject.id,
                subject,
                data["request"] or _NO_OPTIONS,
                now=now,
                defer=defer,
            )
        except AuthError as err:
            return self._error(error_body(err.status, err.message), _UNAUTHENTICATED)
        except ServiceError as err:
            return self._error(service_error_body(err))
        except DataError:
            return self._error(DATA_ERROR)
        except Exception:
            self.app.logger.exception("unhandled error")
            return self._error(INTERNAL_ERROR)
        return logged.decision.outcome.value, (decision_json(logged) + "\n").encode("ascii")

    def _refused_query(self, environ: dict[str, Any]) -> Response | None:
        query = environ.get("QUERY_STRING")
        if not query:
            return None
        names = (name for name, _ in parse_qsl(query, keep_blank_values=True))
        refused = unknown_query(self.app, PATH, "post", names)
        if refused is None:
            return None
        return self._error(input_error_body(422, refused[1], refused[0]))

    def _input(self, environ: dict[str, Any]) -> dict[str, Any] | Response:
        """The body loaded by DECISION_IN, as webargs reads a JSON body: none, or another
        content type, is an empty object."""
        body: Any = {}
        if _json_body(environ.get("CONTENT_TYPE", "")):
            try:
                raw = _read_body(environ, self.limit)
            except RequestEntityTooLarge:  # a chunked body past the limit
                return self._error(too_large_body(self.limit))
            if raw:
                try:
                    body = load_json(raw)
                except BodyError as err:
                    return self._error(input_error_body(400, {"json": [str(err)]}, str(err)))
        try:
            return _LOAD(body)
        except ValidationError as err:
            return self._error(input_error_body(422, {"json": err.messages}))

    def _error(self, body: dict, headers: tuple[tuple[str, str], ...] = ()) -> Response:
        return json_response(self.app, body, headers)


def _json_body(content_type: str) -> bool:
    """Whether webargs reads a body of `content_type` as JSON (as Flask's mimetype has it)."""
    if content_type == "application/json":
        return True
    return is_json(parse_options_header(content_type)[0].lower())


def _read_body(environ: dict[str, Any], limit: int | None) -> bytes:
    """The body: by Content-Length (the pipeline refused one past the limit), else a chunked
    body held to the limit as it is read.

    Raises:
        RequestEntityTooLarge: a chunked body past the limit.
    """
    length = environ.get("CONTENT_LENGTH", "")
    if length.isdigit() and "HTTP_TRANSFER_ENCODING" not in environ:
        return environ["wsgi.input"].read(int(length))
    if limit is None:
        return get_input_stream(environ).read()
    # One byte more than the limit tells a body past it (a stream at its maximum ends there).
    body = get_input_stream(environ, max_content_length=limit + 1).read()
    if len(body) > limit:
        raise RequestEntityTooLarge()
    return body


@blp.route("")
class Decisions(MethodView):
    @guard(*DECIDERS)
    @blp.arguments(DECISION_IN)
    @blp.response(200, DecisionOutSchema)
    @blp.alt_response(404, schema=ApiErrorSchema)
    def post(self, data):
        """Decide whether a subject may have a package now (no side effects but the log)."""
        # Documents the route only: the request pipeline answers every POST /v1/decisions
        # (DecisionRoute above), with the schema and roles declared here.
        raise NotImplementedError("POST /v1/decisions is answered by DecisionRoute")

    @guard()
    @blp.arguments(DecisionQuerySchema(), location="query")
    @blp.response(200, DecisionRecordSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List logged decisions (users see their own)."""
        return context.paged(pagination_parameters, service().list, context.actor(), **args)


@blp.route("/<decision_id>")
class DecisionById(MethodView):
    @guard()
    @blp.response(200, DecisionRecordSchema)
    def get(self, decision_id):
        """One logged decision with its full input (users: about them; apps: asked by them)."""
        return service().get(decision_id, context.actor())
