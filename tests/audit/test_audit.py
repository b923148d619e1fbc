"""The audit trail: chained, append-only in the database, tampering detected."""

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from accounts.agents import agent_create
from audit.actor import Actor
from audit.models import AuditChainHead, AuditEvent
from audit.services import GENESIS_HASH, audit_chain_verify, audit_record
from tests.factories import MinistryFactory

SYSTEM = Actor.system("tests")


def _record(n, **kw):
    ministry = MinistryFactory()
    return [
        audit_record(
            actor=SYSTEM,
            action=f"test.{i}",
            target=ministry,
            ministry_id=ministry.pk,
            data={"i": i, **kw},
        )
        for i in range(n)
    ]


@pytest.mark.django_db
def test_events_are_chained_from_genesis():
    """Each event points to the previous one's hash; the first to the genesis hash."""
    events = _record(3)
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[0].prev_hash == GENESIS_HASH
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    assert AuditChainHead.objects.get().hash == events[2].hash
    assert audit_chain_verify().intact


@pytest.mark.django_db
def test_a_rolled_back_write_leaves_no_event():
    """An event is written in its service's transaction: a failure leaves nothing."""
    with pytest.raises(RuntimeError), transaction.atomic():
        _record(1)
        raise RuntimeError("the service failed after auditing")
    assert AuditEvent.objects.count() == 0
    assert audit_chain_verify().intact


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'forged'",
        "DELETE FROM audit_auditevent",
    ],
)
def test_the_database_refuses_update_and_delete(statement):
    """Append-only is enforced by the database, not only by the code."""
    _record(2)
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditEvent.objects.filter(action="forged").count() == 0
    assert AuditEvent.objects.count() == 2


def _bypass_triggers(sql, params=()):
    """What an attacker with the table owner's rights could do."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER USER")


@pytest.mark.django_db
def test_audit_verify_names_a_modified_event():
    """Rewriting an event's content is detected and its number given."""
    _record(5)
    _bypass_triggers("UPDATE audit_auditevent SET actor_label = 'someone-else' WHERE sequence = 3")
    with pytest.raises(CommandError, match=r"BROKEN at event #3: event #3 was modified"):
        call_command("audit_verify")


@pytest.mark.django_db
def test_audit_verify_detects_a_rehashed_event():
    """Recomputing the forged event's own hash still breaks the next link."""
    events = _record(4)
    forged = events[1]
    forged.action = "forged"
    from audit.services import audit_event_digest

    _bypass_triggers(
        "UPDATE audit_auditevent SET action = 'forged', hash = %s WHERE sequence = 2",
        [audit_event_digest(event=forged)],
    )
    result = audit_chain_verify()
    assert not result.intact
    assert result.broken_sequence == 3
    assert "does not point to the hash" in result.reason


@pytest.mark.django_db
@pytest.mark.parametrize(("deleted", "broken"), [(2, 2), (4, 4)])
def test_audit_verify_detects_removed_events(deleted, broken):
    """A removed event, in the middle or at the end of the trail, is detected."""
    _record(4)
    _bypass_triggers("DELETE FROM audit_auditevent WHERE sequence = %s", [deleted])
    result = audit_chain_verify()
    assert not result.intact
    assert result.broken_sequence == broken


@pytest.mark.django_db
def test_audit_verify_says_intact(capsys):
    """On an untouched trail the command says so and counts the events."""
    _record(3)
    call_command("audit_verify")
    assert "Audit chain intact: 3 events." in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_chain():
    """Writers in parallel transactions are chained one after another, no fork."""
    ministry = MinistryFactory()
    errors = []

    def write(i):
        try:
            for j in range(5):
                with transaction.atomic():
                    audit_record(
                        actor=SYSTEM,
                        action="test.concurrent",
                        target=ministry,
                        data={"thread": i, "n": j},
                    )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert AuditEvent.objects.count() == 30
    assert audit_chain_verify().intact


@pytest.mark.django_db
def test_write_services_record_who_what_and_where(world):
    """A service call leaves an event naming the actor, the object and the address."""
    actor = Actor(user=world.admin_a, ip="192.0.2.10", label=world.admin_a.email)
    agent = agent_create(actor=actor, ministry=world.a, email=f"new@{world.a.code}.gouv.fr")
    event = AuditEvent.objects.get(action="agent.create")
    assert event.actor_id == world.admin_a.pk
    assert event.actor_label == world.admin_a.email
    assert event.ip == "192.0.2.10"
    assert event.object_type == "accounts.agent"
    assert event.object_id == str(agent.pk)
    assert event.ministry_id == world.a.pk


def test_client_address_behind_the_load_balancer(rf, settings):
    """The balancer's X-Forwarded-For entry is used only when trusted, never a forged one."""
    from audit.actor import client_ip

    request = rf.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7", REMOTE_ADDR="10.0.0.2")
    settings.TRUST_X_FORWARDED_FOR = False
    assert client_ip(request) == "10.0.0.2"
    settings.TRUST_X_FORWARDED_FOR = True
    assert client_ip(request) == "198.51.100.7"


@pytest.mark.django_db
def test_recorded_event_is_the_stored_row():
    """The event returned by audit_record is the row in the database, key included."""
    (event,) = _record(1)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.sequence, stored.hash, stored.prev_hash) == (1, event.hash, GENESIS_HASH)


@pytest.mark.django_db
def test_events_beyond_the_head_are_left_to_the_next_check():
    """An event committed after the check read the head does not make it cry wolf."""
    events = _record(3)
    AuditEvent.objects.create(
        sequence=4,
        created_at=events[-1].created_at,
        actor_label="x",
        action="late",
        prev_hash=events[-1].hash,
        hash="f" * 64,
    )
    result = audit_chain_verify()
    assert result.intact and result.checked == 3 and result.head_hash == events[-1].hash


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM audit_auditchainhead",
        "UPDATE audit_auditchainhead SET sequence = sequence - 1",
    ],
)
def test_the_head_only_moves_forward(statement):
    """Rewinding or deleting the chain head is refused by the database."""
    _record(2)
    with (
        pytest.raises(DatabaseError, match="only moves forward"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement)
    assert AuditChainHead.objects.get().sequence == 2


@pytest.mark.django_db
def test_addresses_are_hashed_as_stored():
    """An IPv6 address written in capitals still verifies once stored normalised."""
    ministry = MinistryFactory()
    audit_record(actor=Actor(ip="2001:DB8:0:0::1", label="x"), action="test.ip", target=ministry)
    assert AuditEvent.objects.get().ip == "2001:db8::1"
    assert audit_chain_verify().intact
