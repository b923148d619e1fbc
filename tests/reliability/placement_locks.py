"""Watching a placement from outside: a room's row lock held from another database
session, a placement waiting on it, and the room's live allocations."""

from contextlib import contextmanager

import psycopg
from django.db import connection

from media_nodes.models import Allocation
from tests.workers import database_url


@contextmanager
def row_locked(room):
    """Hold the room's row lock from another database session: a placement of the
    room waits on it, inside its own transaction."""
    with psycopg.connect(database_url()) as other:
        other.execute("SELECT 1 FROM rooms_room WHERE id = %s FOR UPDATE", [room.pk])
        yield
        other.rollback()


def placement_waiting_on_a_lock() -> bool:
    """Whether a database session waits on a lock while writing an allocation."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE '%%media_nodes_allocation%%'"
        )
        return cursor.fetchone()[0] > 0


def live(room) -> int:
    """The room's live allocations (one at most when all is well)."""
    return Allocation.objects.filter(room=room, closed_at__isnull=True).count()
