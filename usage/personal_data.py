"""Everything held about one agent, for their right of access (GDPR art. 15).

Pseudonymised participant sessions are no longer linked to the agent and are not
included: nothing in them says whose they were.
"""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from accounts.models import Agent
from audit.actor import Actor
from audit.models import AuditEvent
from audit.services import audit_record
from rooms.models import ParticipantSession, Room


def _room(room: Room) -> dict:
    return {
        "id": room.pk,
        "slug": room.slug,
        "name": room.name,
        "ministry": room.ministry.code,
        "access": room.access,
        "created_at": room.created_at,
        "deleted_at": room.deleted_at,
    }


def agent_personal_data(*, agent: Agent) -> dict:
    """Profile, role grants, rooms owned and invited to, participant sessions still
    linked to the agent, and audit events where they are the actor or the target."""
    profile = {
        "id": agent.pk,
        "email": agent.email,
        "given_name": agent.given_name,
        "usual_name": agent.usual_name,
        "identity_provider_subject": agent.sub,
        "directory_identifier": agent.external_id,
        "ministry": agent.ministry.code if agent.ministry_id else None,
        "organizational_unit": agent.organizational_unit,
        "is_active": agent.is_active,
        "deactivated_at": agent.deactivated_at,
        "title": agent.title,
        "preferred_language": agent.preferred_language,
        "employee_number": agent.employee_number,
        "manager": agent.manager_id,
        "deleted_at": agent.deleted_at,
        "email_before_deletion": agent.deleted_email,
        "erase_after": agent.erase_after,
        "last_login": agent.last_login,
        "created_at": agent.created_at,
    }
    grants = [
        {
            "role": g.role,
            "ministry": g.ministry.code if g.ministry_id else None,
            "granted_at": g.created_at,
        }
        for g in agent.grants.select_related("ministry").order_by("created_at")
    ]
    rooms = Room.objects.select_related("ministry").order_by("created_at")
    sessions = (
        ParticipantSession.objects.filter(agent=agent)
        .select_related("meeting")
        .order_by("joined_at")
    )
    events = AuditEvent.objects.filter(
        Q(actor_id=agent.pk) | Q(object_type="accounts.agent", object_id=str(agent.pk))
    ).order_by("sequence")
    return {
        "generated_at": timezone.now(),
        "profile": profile,
        "role_grants": grants,
        "rooms_owned": [_room(r) for r in rooms.filter(owner=agent)],
        "rooms_invited": [_room(r) for r in rooms.filter(invitees=agent)],
        "participant_sessions": [
            {
                "room_name": s.meeting.room_name,
                "meeting_started_at": s.meeting.started_at,
                "meeting_ended_at": s.meeting.ended_at,
                "identity": s.identity,
                "organizational_unit": s.organizational_unit,
                "joined_at": s.joined_at,
                "left_at": s.left_at,
                "duration_seconds": s.duration_seconds,
            }
            for s in sessions
        ],
        "audit_events": [
            {
                "sequence": e.sequence,
                "created_at": e.created_at,
                "action": e.action,
                "actor": e.actor_label,
                "ip": e.ip,
                "object_type": e.object_type,
                "object_id": e.object_id,
                "object": e.object_repr,
                "data": e.data,
            }
            for e in events
        ],
    }


def agent_personal_data_export(*, actor: Actor, agent: Agent) -> dict:
    """The agent's data, with the export itself recorded in the audit trail."""
    data = agent_personal_data(agent=agent)
    audit_record(
        actor=actor,
        action="agent.personal_data_export",
        target=agent,
        ministry_id=agent.ministry_id,
    )
    return data
