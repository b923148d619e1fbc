"""The update helper: fields set, and the audit's diff of what changed."""

from types import SimpleNamespace

import pytest

from audit.actor import Actor
from audit.models import AuditEvent
from controlplane.updates import fields_apply
from rooms.services import room_create, room_update


def test_only_changed_fields_are_in_the_diff():
    """Each changed field is recorded from what to what; an unchanged one is not."""
    row = SimpleNamespace(name="Réunion", size=10)
    changes = fields_apply(row, {"name": "Point hebdo", "size": 10}, allowed=("name", "size"))
    assert changes == {"name": {"from": "Réunion", "to": "Point hebdo"}}
    assert (row.name, row.size) == ("Point hebdo", 10)


def test_an_unknown_field_changes_nothing():
    """A field the row does not offer is refused before any other is set."""
    row = SimpleNamespace(name="Réunion")
    with pytest.raises(ValueError, match="password"):
        fields_apply(row, {"name": "x", "password": "y"}, allowed=("name",))
    assert row.name == "Réunion"


@pytest.mark.django_db
def test_a_room_update_audits_its_diff(world):
    """Renaming a room records the old and the new name, and nothing when unchanged."""
    actor = Actor(user=world.agent_a, label="t")
    room = room_create(actor=actor, name="Réunion", expected_size=10)
    room_update(actor=actor, room=room, name="Point hebdo", expected_size=10)
    event = AuditEvent.objects.filter(action="room.update").get()
    assert event.data == {"name": {"from": "Réunion", "to": "Point hebdo"}}
    room_update(actor=actor, room=room, name="Point hebdo")
    assert AuditEvent.objects.filter(action="room.update").count() == 1
