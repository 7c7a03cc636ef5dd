"""The delivery outbox: list jobs, see why one failed, retry it."""

from __future__ import annotations

from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.errors import ApiErrorSchema
from policyd.api.schemas import JobOutSchema, JobQuerySchema
from policyd.services.actor import Role
from policyd.services.jobs import JobService

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Delivery jobs")
READERS = (Role.ADMIN, Role.AUDITOR)


@blp.route("")
class Jobs(MethodView):
    @guard(*READERS)
    @blp.arguments(JobQuerySchema(), location="query")
    @blp.response(200, JobOutSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List grant and revoke jobs (state=failed shows what needs attention)."""
        return context.paged(pagination_parameters, JobService(context.session()).list, **args)


@blp.route("/<job_id>")
class JobById(MethodView):
    @guard(*READERS)
    @blp.response(200, JobOutSchema)
    def get(self, job_id):
        """One job with its attempts and last error."""
        return JobService(context.session()).get(job_id)


@blp.route("/<job_id>/retry")
class RetryJob(MethodView):
    @guard(Role.ADMIN)
    @blp.response(200, JobOutSchema)
    @blp.alt_response(409, schema=ApiErrorSchema)
    def post(self, job_id):
        """Queue a failed job again."""
        job = JobService(context.session()).retry(context.actor(), job_id, now=context.now())
        context.deliver()
        return job
