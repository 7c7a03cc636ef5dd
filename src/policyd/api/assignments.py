"""Assignments: list, assign directly, remove, extend."""

from __future__ import annotations

from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.requests import idempotency_key, options
from policyd.api.schemas import (
    AssignmentOutSchema,
    AssignmentQuerySchema,
    DirectAssignmentInSchema,
    ExtendInSchema,
    RequestOutSchema,
)
from policyd.services.actor import Role
from policyd.services.assignments import AssignmentService
from policyd.services.direct_assignments import DirectAssignmentService
from policyd.services.requests import RequestService

blp = Blueprint("assignments", __name__, url_prefix="/v1/assignments", description="Assignments")


def service() -> AssignmentService:
    return AssignmentService(context.session(), context.runtime())


@blp.route("")
class Assignments(MethodView):
    @guard()
    @blp.arguments(AssignmentQuerySchema(), location="query")
    @blp.response(200, AssignmentOutSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List assignments (users see their own)."""
        return context.paged(pagination_parameters, service().list, context.actor(), **args)

    @guard(Role.USER, Role.ADMIN)
    @blp.arguments(DirectAssignmentInSchema())
    @blp.response(201, AssignmentOutSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, data):
        """Assign a package directly, for a lifetime (an admin, a catalog owner or a package
        manager)."""
        assignment = DirectAssignmentService(context.session(), context.runtime()).assign(
            context.actor(),
            data["package"],
            data["subject"],
            data["duration"],
            justification=data["justification"],
            now=context.now(),
        )
        context.deliver()
        return assignment


@blp.route("/<assignment_id>")
class AssignmentById(MethodView):
    @guard()
    @blp.response(200, AssignmentOutSchema)
    def get(self, assignment_id):
        """One assignment."""
        return service().get(context.actor(), assignment_id)

    @guard(Role.USER, Role.ADMIN)
    @blp.response(200, AssignmentOutSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def delete(self, assignment_id):
        """Remove access now (an admin, the holder, or who administers its package)."""
        assignment = service().remove(context.actor(), assignment_id, now=context.now())
        context.deliver()
        return assignment


@blp.route("/<assignment_id>/extend")
class ExtendAssignment(MethodView):
    @guard(Role.USER, Role.APP, Role.ADMIN)
    @blp.arguments(ExtendInSchema())
    @blp.response(201, RequestOutSchema)
    @blp.alt_response(200, schema=RequestOutSchema, description="the Idempotency-Key's request")
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, data, assignment_id):
        """Ask for more time; the current rules decide it as a new request."""
        request, created = RequestService(
            context.session(), context.runtime(), context.listeners()
        ).extend(
            context.actor(),
            assignment_id,
            options(data),
            now=context.now(),
            idempotency_key=idempotency_key(),
        )
        context.deliver()
        return request, 201 if created else 200
