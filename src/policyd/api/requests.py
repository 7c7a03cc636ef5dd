"""Access requests and their approval stages."""

from __future__ import annotations

from flask import request as http_request
from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.schemas import (
    RequestInSchema,
    RequestOutSchema,
    RequestQuerySchema,
    VerdictInSchema,
)
from policyd.domain import RequestOptions, Subject
from policyd.services.actor import Role
from policyd.services.errors import InvalidError
from policyd.services.requests import RequestService

blp = Blueprint("requests", __name__, url_prefix="/v1/requests", description="Access requests")


def service() -> RequestService:
    return RequestService(context.session(), context.runtime(), context.listeners())


def options(data: dict) -> RequestOptions:
    # The schema's Duration field has checked the duration. A requester is always asked the
    # package's questions, so no answers at all is {} (its required questions unanswered).
    answers = data.get("answers") or {}
    return RequestOptions(data.get("duration"), data.get("justification"), answers)


def idempotency_key() -> str | None:
    key = http_request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 200):
        raise InvalidError("Idempotency-Key must be 1 to 200 characters", field="Idempotency-Key")
    return key


@blp.route("")
class Requests(MethodView):
    @guard(Role.USER, Role.APP, Role.ADMIN)
    @blp.arguments(RequestInSchema())
    @blp.response(201, RequestOutSchema)
    @blp.alt_response(200, schema=RequestOutSchema, description="the Idempotency-Key's request")
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, data):
        """File an access request (Idempotency-Key honoured for 24 hours)."""
        actor = context.actor()
        subject: Subject | None = data["subject"]
        subject_id = subject.id if subject else actor.principal
        request, created = service().create(
            actor,
            data["package"],
            subject_id,
            subject,
            options(data),
            now=context.now(),
            idempotency_key=idempotency_key(),
        )
        context.deliver()
        return request, 201 if created else 200

    @guard()
    @blp.arguments(RequestQuerySchema(), location="query")
    @blp.response(200, RequestOutSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List requests; `approver=me` is the caller's approval inbox."""
        return context.paged(pagination_parameters, service().list, context.actor(), **args)


@blp.route("/<request_id>")
class RequestById(MethodView):
    @guard()
    @blp.response(200, RequestOutSchema)
    def get(self, request_id):
        """One request with its stages and approvals."""
        return service().get(context.actor(), request_id)


def _verdict(request_id: str, data: dict, verdict: str):
    actor = context.actor()
    comment = data.get("comment") or data.get("justification")
    request = service().decide_stage(actor, request_id, verdict, comment=comment, now=context.now())
    context.deliver()
    return request


@blp.route("/<request_id>/approve")
class ApproveRequest(MethodView):
    @guard(Role.USER, Role.APP, Role.ADMIN)
    @blp.arguments(VerdictInSchema())
    @blp.response(200, RequestOutSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, data, request_id):
        """Approve the current stage (resolved approvers only; never the requester)."""
        return _verdict(request_id, data, "approve")


@blp.route("/<request_id>/deny")
class DenyRequest(MethodView):
    @guard(Role.USER, Role.APP, Role.ADMIN)
    @blp.arguments(VerdictInSchema())
    @blp.response(200, RequestOutSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, data, request_id):
        """Deny the request at its current stage."""
        return _verdict(request_id, data, "deny")


@blp.route("/<request_id>/cancel")
class CancelRequest(MethodView):
    @guard(Role.USER, Role.APP, Role.ADMIN)
    @blp.response(200, RequestOutSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, request_id):
        """Cancel a request that is still waiting (the requester only)."""
        return service().cancel(context.actor(), request_id, now=context.now())
