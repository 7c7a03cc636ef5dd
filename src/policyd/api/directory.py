"""Directory: users, groups, memberships, connected organisations."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from policyd.api import context
from policyd.api.auth import require
from policyd.api.schemas import GroupSchema, MemberSchema, OrganizationSchema, UserSchema
from policyd.services.actor import Role
from policyd.services.directory import DirectoryService
from policyd.services.errors import NotFoundError
from policyd.services.leavers import LeaverService
from policyd.store.models import ConnectedOrganization, Group

blp = Blueprint("directory", __name__, url_prefix="/v1", description="Directory")
READERS = (Role.ADMIN, Role.AUDITOR, Role.APP)


def service() -> DirectoryService:
    return DirectoryService(context.session())


def commit(value):
    context.session().commit()
    return value


@blp.route("/users")
class Users(MethodView):
    @blp.response(200, UserSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List users."""
        require(*READERS)
        return context.paged(pagination_parameters, service().list_users)


@blp.route("/users/<user_id>")
class UserById(MethodView):
    @blp.response(200, UserSchema)
    def get(self, user_id):
        """One user (users may read themselves)."""
        actor = context.actor()
        if actor.role is Role.USER and actor.principal != user_id:
            require(*READERS)
        return service().get_user(user_id)

    @blp.arguments(UserSchema())
    @blp.response(200, UserSchema)
    def put(self, data, user_id):
        """Create or replace a user."""
        actor = require(Role.ADMIN)
        return commit(service().put_user(actor, user_id, data, now=context.now()))

    @blp.response(204)
    def delete(self, user_id):
        """Delete a user: their access is removed, their open requests canceled and their
        pending approvals handed on; their history stays (docs/lifecycle.md#leavers)."""
        actor = require(Role.ADMIN)
        leavers = LeaverService(context.session(), context.runtime(), context.listeners())
        leavers.delete_user(actor, user_id, now=context.now())
        context.deliver()


@blp.route("/groups")
class Groups(MethodView):
    @blp.response(200, GroupSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List groups."""
        require(*READERS)
        return context.paged(pagination_parameters, service().list_groups)


@blp.route("/organizations")
class Organizations(MethodView):
    @blp.response(200, OrganizationSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List connected organisations."""
        require(*READERS)
        return context.paged(pagination_parameters, service().list_organizations)


@blp.route("/groups/<group_id>")
class GroupById(MethodView):
    @blp.response(200, GroupSchema)
    def get(self, group_id):
        """One group."""
        require(*READERS)
        group = context.session().get(Group, group_id)
        if group is None:
            raise NotFoundError(f"no group {group_id!r}", field="id")
        return group

    @blp.arguments(GroupSchema())
    @blp.response(200, GroupSchema)
    def put(self, data, group_id):
        """Create or rename a group."""
        actor = require(Role.ADMIN)
        return commit(service().put_group(actor, group_id, data["display_name"], now=context.now()))


@blp.route("/groups/<group_id>/members")
class GroupMembers(MethodView):
    @blp.response(200, MemberSchema(many=True))
    @blp.paginate()
    def get(self, group_id, pagination_parameters):
        """Members of a group, by user id."""
        require(*READERS)
        ids = context.paged(pagination_parameters, service().members, group_id)
        return [{"user_id": user_id} for user_id in ids]


@blp.route("/groups/<group_id>/members/<user_id>")
class GroupMember(MethodView):
    @blp.response(204)
    def put(self, group_id, user_id):
        """Add a member (idempotent)."""
        actor = require(Role.ADMIN)
        service().add_member(actor, group_id, user_id, now=context.now())
        commit(None)

    @blp.response(204)
    def delete(self, group_id, user_id):
        """Remove a member (idempotent)."""
        actor = require(Role.ADMIN)
        service().remove_member(actor, group_id, user_id, now=context.now())
        commit(None)


@blp.route("/organizations/<org_id>")
class OrganizationById(MethodView):
    @blp.response(200, OrganizationSchema)
    def get(self, org_id):
        """One connected organisation."""
        require(*READERS)
        org = context.session().get(ConnectedOrganization, org_id)
        if org is None:
            raise NotFoundError(f"no connected organization {org_id!r}", field="id")
        return org

    @blp.arguments(OrganizationSchema())
    @blp.response(200, OrganizationSchema)
    def put(self, data, org_id):
        """Create or replace a connected organisation."""
        actor = require(Role.ADMIN)
        return commit(service().put_organization(actor, org_id, data, now=context.now()))
