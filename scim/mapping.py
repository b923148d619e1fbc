"""Agents and directory groups as SCIM Users and Groups, and back (RFC 7643 §4).

One place says which SCIM attribute is which column, so reads and writes cannot
drift apart: a resource read back after a write shows what was written.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from scim2_models import InvalidValueException

from accounts.models import Agent
from scim import services
from scim.models import DirectoryGroup
from scim.protocol import with_meta
from scim.resources import (
    Email,
    EnterpriseUser,
    Group,
    GroupMember,
    GroupMembership,
    Manager,
    Name,
    UserWithExtension,
)


def user_resource(agent: Agent, base: str) -> UserWithExtension:
    """An agent as a SCIM User, with its groups and meta (``directory_groups`` prefetched)."""
    names = None
    if agent.given_name or agent.usual_name:
        names = Name(given_name=agent.given_name or None, family_name=agent.usual_name or None)
    groups = [
        GroupMembership(value=str(g.pk), ref=f"{base}/Groups/{g.pk}", display=g.display_name)
        for g in agent.directory_groups.all()
    ]
    user = UserWithExtension(
        id=str(agent.pk),
        external_id=agent.external_id or None,
        user_name=agent.email,
        name=names,
        display_name=agent.full_name or None,
        title=agent.title or None,
        preferred_language=agent.preferred_language or None,
        active=agent.is_active,
        emails=[Email(value=agent.email, type="work", primary=True)],
        groups=groups or None,
    )
    manager = None
    if agent.manager_id:
        manager = Manager(value=str(agent.manager_id), ref=f"{base}/Users/{agent.manager_id}")
    if agent.organizational_unit or agent.employee_number or manager:
        user[EnterpriseUser] = EnterpriseUser(
            employee_number=agent.employee_number or None,
            department=agent.organizational_unit or None,
            manager=manager,
        )
    return with_meta(user, "User", agent, base)


def _work_email(user: UserWithExtension) -> str | None:
    """The address ``emails`` gives for the agent: the "work" one, or a lone one with
    no type. Other addresses (home, other: personal ones) are not kept."""
    emails = [e for e in user.emails or [] if (e.value or "").strip()]
    work = [e for e in emails if (e.type or "").lower() == "work"]
    if not work and len(emails) == 1 and not emails[0].type:
        work = emails
    return work[0].value.strip().lower() if work else None


def agent_email(user: UserWithExtension, current: str | None = None) -> str:
    """The agent's one professional address, from ``userName`` and the work email.

    Directories write both: Entra ID maps userPrincipalName to userName and mail to
    ``emails[type eq "work"].value``, and changes each with its own PATCH operation.
    Equal, they are the address. In a write to an existing agent (``current`` is its
    address), the one that changed is the new address: Entra's PATCH of the work
    email alone renames the agent, and so does a rename of userName whose emails
    still carry the old address. Two different new addresses are refused."""
    user_name = (user.user_name or "").strip().lower()
    if not user_name or "@" not in user_name:
        raise InvalidValueException(detail=_("userName must be the agent's professional email."))
    work = _work_email(user)
    if work is None or work == user_name:
        return user_name
    if current is not None and user_name == current:
        return work
    if current is not None and work == current:
        return user_name
    raise InvalidValueException(
        detail=_(
            'emails[type eq "work"].value “%(work)s” must be the same address as '
            "userName “%(user_name)s”: an agent has one professional email."
        )
        % {"work": work, "user_name": user_name}
    )


def _manager_id(manager: Manager | None) -> str:
    """The manager's SCIM id, from ``value`` or else the last segment of ``$ref``."""
    if manager is None:
        return ""
    if manager.value:
        return manager.value.strip()
    return str(manager.ref).rstrip("/").rsplit("/", 1)[-1] if manager.ref else ""


def agent_data(user: UserWithExtension, current: str | None = None) -> services.AgentData:
    """What a SCIM User asks of its agent, for the services (``current``: the agent's
    address, for a write to an existing agent). displayName is not kept: it is
    derived from the names."""
    extension = user[EnterpriseUser]
    manager = extension.manager if extension else None
    return services.AgentData(
        email=agent_email(user, current),
        given_name=(user.name.given_name or "") if user.name else "",
        usual_name=(user.name.family_name or "") if user.name else "",
        external_id=user.external_id or "",
        organizational_unit=(extension.department or "") if extension else "",
        title=user.title or "",
        preferred_language=user.preferred_language or "",
        employee_number=(extension.employee_number or "") if extension else "",
        manager=_manager_id(manager),
        active=user.active,
    )


def group_resource(group: DirectoryGroup, base: str) -> Group:
    """A directory group as a SCIM Group, with its members and meta (``members`` prefetched)."""
    members = [
        GroupMember(value=str(a.pk), ref=f"{base}/Users/{a.pk}", type="User")
        for a in group.members.all()
    ]
    resource = Group(
        id=str(group.pk),
        external_id=group.external_id or None,
        display_name=group.display_name,
        members=members or None,
    )
    return with_meta(resource, "Group", group, base)


def group_fields(group: Group) -> dict:
    """What a SCIM Group asks of its directory group, as the services' keyword arguments."""
    if not (group.display_name or "").strip():
        raise InvalidValueException(detail=_("displayName is required."))
    members = []
    for member in group.members or []:
        if member.type not in (None, "User"):
            raise InvalidValueException(detail=_("Groups hold users only, not other groups."))
        members.append(member.value)
    return {
        "display_name": group.display_name.strip(),
        "external_id": group.external_id or "",
        "members": members,
    }
