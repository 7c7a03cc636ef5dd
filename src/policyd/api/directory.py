"""Directory: users, groups, memberships, connected organisations."""

from __future__ import annotations

from flask.views import MethodView

from policyd.api import context
from policyd.api.auth import guard
from policyd.api.blueprint import Blueprint
from policyd.api.schemas import (
    GroupSchema,
    MemberSchema,
    OrganizationQuerySchema,
    OrganizationRemovedSchema,
    OrganizationSchema,
    UserQuerySchema,
    UserSchema,
)
from policyd.services.actor import Role
from policyd.services.directory import KEEP
from policyd.services.directory.admin import DirectoryAdmin
from policyd.services.errors import ForbiddenError
from policyd.services.leavers import LeaverService
from policyd.services.organization_removal import OrganizationRemoval

blp = Blueprint("directory", __name__, url_prefix="/v1", description="Directory")
READERS = (Role.ADMIN, Role.AUDITOR, Role.APP)
READER_NAMES = ", ".join(r.value for r in READERS)


def service() -> DirectoryAdmin:
    return DirectoryAdmin(context.session())


@blp.route("/users")
class Users(MethodView):
    @guard(*READERS)
    @blp.arguments(UserQuerySchema(), location="query")
    @blp.response(200, UserSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List users, in id order."""
        return context.paged(pagination_parameters, service().list_users, **args)


@blp.route("/users/<user_id>")
class UserById(MethodView):
    @guard()
    @blp.response(200, UserSchema)
    def get(self, user_id):
        """One user (users may read themselves)."""
        actor = context.actor()
        if actor.role is Role.USER and actor.principal != user_id:
            raise ForbiddenError(f"this needs one of the roles: {READER_NAMES}")
        return service().get_user(user_id)

    @guard(Role.ADMIN)
    @blp.arguments(UserSchema())
    @blp.response(200, UserSchema)
    def put(self, data, user_id):
        """Create a user, or update one: the fields sent are set (null clears one), the others
        keep their value."""
        external = data.pop("manager_external")
        return service().put_user(
            context.actor(),
            user_id,
            data,
            now=context.now(),
            keep_missing=True,
            external_manager=external,
        )

    @guard(Role.ADMIN)
    @blp.response(204)
    def delete(self, user_id):
        """Delete a user: their access is removed, their open requests canceled and their
        pending approvals handed on; their history stays (docs/lifecycle.md#leavers)."""
        leavers = LeaverService(context.session(), context.runtime(), context.listeners())
        leavers.delete_user(context.actor(), user_id, now=context.now())
        context.deliver()


@blp.route("/users/<user_id>/disable")
class DisableUser(MethodView):
    @guard(Role.ADMIN)
    @blp.response(204)
    def post(self, user_id):
        """Disable a user: as for a deletion their access is removed, their open requests
        canceled and their pending approvals handed on, but they stay in the directory and may
        be enabled again (docs/lifecycle.md#leavers)."""
        leavers = LeaverService(context.session(), context.runtime(), context.listeners())
        leavers.disable_user(context.actor(), user_id, now=context.now())
        context.deliver()


@blp.route("/users/<user_id>/enable")
class EnableUser(MethodView):
    @guard(Role.ADMIN)
    @blp.response(204)
    def post(self, user_id):
        """Enable a disabled user: they may request access again (nothing is given back)."""
        leavers = LeaverService(context.session(), context.runtime(), context.listeners())
        leavers.enable_user(context.actor(), user_id, now=context.now())


@blp.route("/groups")
class Groups(MethodView):
    @guard(*READERS)
    @blp.response(200, GroupSchema(many=True))
    @blp.paginate()
    def get(self, pagination_parameters):
        """List groups."""
        return context.paged(pagination_parameters, service().list_groups)


@blp.route("/organizations")
class Organizations(MethodView):
    @guard(*READERS)
    @blp.arguments(OrganizationQuerySchema(), location="query")
    @blp.response(200, OrganizationSchema(many=True))
    @blp.paginate()
    def get(self, args, pagination_parameters):
        """List connected organisations (`state=proposed`: those requests proposed)."""
        return context.paged(pagination_parameters, service().list_organizations, **args)


@blp.route("/groups/<group_id>")
class GroupById(MethodView):
    @guard(*READERS)
    @blp.response(200, GroupSchema)
    def get(self, group_id):
        """One group."""
        return service().get_group(group_id)

    @guard(Role.ADMIN)
    @blp.arguments(GroupSchema())
    @blp.response(200, GroupSchema)
    def put(self, data, group_id):
        """Create a group, or rename one when `display_name` is sent (members stay)."""
        return service().put_group(
            context.actor(), group_id, data.get("display_name", KEEP), now=context.now()
        )


@blp.route("/groups/<group_id>/members")
class GroupMembers(MethodView):
    @guard(*READERS)
    @blp.response(200, MemberSchema(many=True))
    @blp.paginate()
    def get(self, group_id, pagination_parameters):
        """Members of a group, by user id."""
        ids = context.paged(pagination_parameters, service().members, group_id)
        return [{"user_id": user_id} for user_id in ids]


@blp.route("/groups/<group_id>/members/<user_id>")
class GroupMember(MethodView):
    @guard(Role.ADMIN)
    @blp.response(204)
    def put(self, group_id, user_id):
        """Add a member (idempotent)."""
        service().add_member(context.actor(), group_id, user_id, now=context.now())

    @guard(Role.ADMIN)
    @blp.response(204)
    def delete(self, group_id, user_id):
        """Remove a member (idempotent)."""
        service().remove_member(context.actor(), group_id, user_id, now=context.now())


@blp.route("/organizations/<org_id>")
class OrganizationById(MethodView):
    @guard(*READERS)
    @blp.response(200, OrganizationSchema)
    def get(self, org_id):
        """One connected organisation."""
        return service().get_organization(org_id)

    @guard(Role.ADMIN)
    @blp.arguments(OrganizationSchema())
    @blp.response(200, OrganizationSchema)
    def put(self, data, org_id):
        """Create a connected organisation, or update one: the fields sent are set, the
        others keep their value."""
        return service().put_organization(
            context.actor(), org_id, data, now=context.now(), keep_missing=True
        )

    @guard(Role.ADMIN)
    @blp.response(200, OrganizationRemovedSchema)
    def delete(self, org_id):
        """Remove a connected organisation: its guests' access is removed through the
        connectors, their open requests canceled; POLICYD_EXTERNAL_USERS then applies to them
        (docs/organizations.md)."""
        removal = OrganizationRemoval(context.session(), context.runtime(), context.listeners())
        ended = removal.remove_organization(context.actor(), org_id, now=context.now())
        context.deliver()
        return ended
