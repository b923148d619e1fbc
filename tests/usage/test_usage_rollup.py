"""Daily usage roll-up on PostgreSQL: totals equal the sums of the sessions, re-running
changes nothing, late webhooks land in their day, the national peak is its own."""

import io
import random
from datetime import date, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import Ministry
from rooms.models import MeetingSession, ParticipantSession
from tests.factories import AgentFactory, DailyUsageFactory
from tests.usage_rollup_definition import FIELDS, rollup_definition, stored_figures
from tests.usage_scenes import at, meeting, stay
from usage.models import DailyUsage, RollupState
from usage.rollup import rollup_days, rollup_incremental

pytestmark = pytest.mark.django_db


def rows(**filters) -> dict:
    """DailyUsage rows as {(day, ministry code or None, unit): figures}."""
    return {
        (r.day, r.ministry.code if r.ministry_id else None, r.organizational_unit): tuple(
            getattr(r, f) for f in FIELDS
        )
        for r in DailyUsage.objects.filter(**filters).select_related("ministry")
    }


@pytest.fixture
def scene(world):
    """Two ministries, two units of A, meetings crossing midnight, overlapping stays,
    and one stay still open. D is ten days ago."""
    a, b = world.a, world.b
    d = timezone.localdate() - timedelta(days=10)
    a1 = AgentFactory(ministry=a, organizational_unit="U1")
    a2 = AgentFactory(ministry=a, organizational_unit="U2")
    a3 = AgentFactory(ministry=a, organizational_unit="U1")
    b1, b2, b3 = (AgentFactory(ministry=b) for _ in range(3))
    m1 = meeting(a, at(d, 10), at(d, 11))
    stay(m1, a1, at(d, 10), at(d, 11))
    stay(m1, a2, at(d, 10, 30), at(d, 11))
    stay(m1, b1, at(d, 10, 15), at(d, 10, 45))
    m2 = meeting(b, at(d, 14), at(d, 15))
    stay(m2, b2, at(d, 14), at(d, 15))
    stay(m2, b3, at(d, 14, 10), at(d, 14, 50))
    m3 = meeting(a, at(d, 23, 30), at(d, 0, 30, plus_days=1))  # crosses midnight
    stay(m3, a1, at(d, 23, 30), at(d, 0, 30, plus_days=1))
    stay(m3, a3, at(d, 23, 45), at(d, 0, 15, plus_days=1))
    m4 = meeting(a, at(d, 9, plus_days=1))  # still running
    stay(m4, a2, at(d, 9, plus_days=1))
    return d


def test_rows_equal_the_sums_of_the_sessions(scene):
    """Each figure of each scope is what the sessions add up to, midnight split."""
    d = scene
    d1 = d + timedelta(days=1)
    written = rollup_days(d, d1)
    assert written == len(rows()) == 9
    assert rows() == {
        # meetings, minutes, agents, peak, average meeting seconds
        (d, None, ""): (3, 265, 6, 3, 3600),
        (d, "alpha", ""): (2, 135, 3, 2, 3600),
        (d, "alpha", "U1"): (2, 105, 2, 2, 3600),
        (d, "alpha", "U2"): (1, 30, 1, 1, 3600),
        (d, "bravo", ""): (1, 130, 3, 2, 3600),
        (d1, None, ""): (1, 45, 2, 2, 3600),
        (d1, "alpha", ""): (1, 45, 2, 2, 3600),
        (d1, "alpha", "U1"): (0, 45, 2, 2, 3600),
        (d1, "alpha", "U2"): (1, 0, 0, 0, 0),  # the open stay counts once it ends
    }


def test_national_peak_is_not_the_sum_of_ministries_peaks(scene):
    """A's and B's peaks (2 each) happen at different times: the national peak is 3."""
    rollup_days(scene, scene)
    day = rows(day=scene)
    assert day[(scene, "alpha", "")][3] + day[(scene, "bravo", "")][3] == 4
    assert day[(scene, None, "")][3] == 3


def test_minutes_add_up_to_the_sessions_durations(scene):
    """Over all days, national participant-minutes are the ended stays' durations."""
    rollup_days(scene - timedelta(days=1), scene + timedelta(days=2))
    ended = ParticipantSession.objects.filter(left_at__isnull=False)
    total_seconds = sum(p.duration_seconds for p in ended)
    national = DailyUsage.objects.filter(ministry=None)
    assert sum(r.participant_minutes for r in national) * 60 == total_seconds


def test_rerunning_any_range_changes_nothing(scene):
    """Rolling up again, the whole range or any part of it, gives identical rows."""
    first, last = scene - timedelta(days=2), scene + timedelta(days=3)
    rollup_days(first, last)
    before = rows()
    rollup_days(first, last)
    assert rows() == before
    rollup_days(scene + timedelta(days=1), scene + timedelta(days=1))
    rollup_days(scene, scene)
    assert rows() == before
    out = io.StringIO()
    call_command("usage_rollup", "--from", str(first), "--to", str(last), stdout=out)
    assert "[6/6]" in out.getvalue()
    assert rows() == before


def sql_matches_python(days) -> dict:
    """Roll ``days`` up on PostgreSQL, assert the rows equal the Python definition's,
    and return them as {(day, ministry id, unit): figures}."""
    rollup_days(days[0], days[-1])
    expected = rollup_definition(days)
    actual = stored_figures()
    assert actual == expected
    return actual


def test_sql_matches_the_python_definition_on_random_sessions(world):
    """On random stays (midnight, DST-free days, overlaps, guests), the SQL roll-up and
    the Python definition agree row for row."""
    rng = random.Random(7)
    base = timezone.localdate() - timedelta(days=20)
    agents = [
        AgentFactory(
            ministry=rng.choice([world.a, world.b]), organizational_unit=rng.choice(["", "X", "Y"])
        )
        for _ in range(12)
    ]
    for _ in range(25):
        start = at(base, rng.randrange(0, 24), rng.randrange(0, 60), plus_days=rng.randrange(0, 5))
        end = start + timedelta(minutes=rng.randrange(5, 300))
        m = meeting(rng.choice([world.a, world.b, None]), start, end)
        for _ in range(rng.randrange(1, 6)):
            joined = start + timedelta(minutes=rng.randrange(0, 60))
            joined = min(joined, end)
            left = min(end, joined + timedelta(minutes=rng.randrange(0, 240)))
            stay(m, rng.choice([*agents, None]), joined, left)
    days = [base + timedelta(days=n) for n in range(7)]
    sql_matches_python(days)


def test_sql_matches_the_python_definition_on_awkward_sessions(world):
    """Pseudonymised stays (agent and guest), zero-length stays, joins and leaves at the
    same instant, stays over several days, many units: the PostgreSQL path (set-based
    figures and the binary-COPY sweep) and the Python definition agree row for row."""
    rng = random.Random(11)
    base = timezone.localdate() - timedelta(days=30)
    units = ["", "A", "B", "C", "D"]
    agents = [
        AgentFactory(ministry=rng.choice([world.a, world.b]), organizational_unit=rng.choice(units))
        for _ in range(20)
    ]
    made = []
    for _ in range(30):
        start = at(base, rng.randrange(0, 24), rng.choice([0, 30]), plus_days=rng.randrange(0, 6))
        end = start + timedelta(minutes=rng.choice([0, 30, 60, 600, 3000]))
        m = meeting(rng.choice([world.a, world.b, None]), start, end)
        for _ in range(rng.randrange(1, 8)):
            # Half-hour steps: many joins and leaves fall on the same instant.
            joined = min(end, start + timedelta(minutes=30 * rng.randrange(0, 4)))
            left = min(end, joined + timedelta(minutes=30 * rng.randrange(0, 5)))
            made.append(stay(m, rng.choice([*agents, None]), joined, left))
    # Some stays lose their agent, as retention does, under the agent's pseudonym.
    for p in rng.sample(made, len(made) // 3):
        p.identity = ("agent-" if p.agent_id else "guest-") + f"{rng.randrange(6):02x}"
        p.agent = None
        p.pseudonymised_at = timezone.now()
        p.save()
    assert ParticipantSession.objects.filter(pseudonymised_at__isnull=False).exists()
    days = [base + timedelta(days=n) for n in range(9)]
    actual = sql_matches_python(days)
    assert max(v[3] for v in actual.values()) >= 3  # the sweep had real overlaps to find


def test_sql_matches_the_python_definition_at_the_edges_of_a_range(world):
    """Meetings that started before the range or end after it, stays outside the range
    of a meeting within it, stays still open and a meeting still running: units are
    credited with the meetings they attended wherever their stays lie, and the
    PostgreSQL path (which finds those stays by meeting) agrees with the definition."""
    base = timezone.localdate() - timedelta(days=12)
    first, last = base + timedelta(days=2), base + timedelta(days=4)
    x, y, z, w, v = (AgentFactory(ministry=world.a, organizational_unit=unit) for unit in "XYZWV")
    guest = None
    before = meeting(world.a, at(base, 10), at(base, 12, plus_days=3))  # ends within
    stay(before, x, at(base, 10), at(base, 11))  # wholly before the range
    stay(before, y, at(base, 23), at(base, 1, plus_days=3))  # into the range
    stay(before, guest, at(base, 10), at(base, 12, plus_days=3))
    running = meeting(world.b, at(last, 23))  # not ended
    stay(running, z, at(last, 23, 30))  # still open
    inside = meeting(world.a, at(base, 10, plus_days=3), at(base, 12, plus_days=3))
    stay(inside, w, at(base, 10, plus_days=3))  # open, in a meeting that ended
    stay(inside, x, at(base, 10, plus_days=3), at(base, 11, plus_days=3))
    after = meeting(world.b, at(last, 20), at(last, 2, plus_days=1))  # ends after
    stay(after, v, at(last, 1, plus_days=1), at(last, 2, plus_days=1))  # wholly after
    stay(after, y, at(last, 20), at(last, 21))
    days = [first + timedelta(days=n) for n in range(3)]
    actual = sql_matches_python(days)
    alpha = world.a.pk
    # Each unit found by its own path, as the definition says.
    assert actual[(last, alpha, "Z")][0] == 1  # an open stay of a running meeting
    assert actual[(last, alpha, "V")][0] == 1  # a stay after the range
    assert actual[(base + timedelta(days=3), alpha, "W")][0] == 1  # an open stay
    # X's stay before the range still counts X in the meeting ending within it (74
    # hours long), beside the 2-hour meeting X attended that day: their mean length.
    assert actual[(base + timedelta(days=3), alpha, "X")][4] == (74 + 2) * 3600 // 2


@pytest.mark.parametrize(
    "change", [date(2026, 3, 29), date(2026, 10, 25)], ids=["spring", "autumn"]
)
def test_sql_matches_the_python_definition_across_a_clock_change(world, change):
    """Paris days of 23 and 25 hours: stays across the changed hour and across the
    midnights around it are cut at local midnights, as the definition says."""
    a1 = AgentFactory(ministry=world.a, organizational_unit="U1")
    a2 = AgentFactory(ministry=world.a, organizational_unit="U2")
    b1 = AgentFactory(ministry=world.b)
    eve = change - timedelta(days=1)
    m1 = meeting(world.a, at(eve, 22), at(change, 4))
    stay(m1, a1, at(eve, 22), at(change, 4))
    stay(m1, b1, at(eve, 23, 30), at(change, 1, 30))
    stay(m1, a2, at(change, 1, 45), at(change, 3, 30))
    m2 = meeting(world.b, at(change, 23), at(change, 1, plus_days=1))
    stay(m2, b1, at(change, 23), at(change, 0, plus_days=1))  # leaves at midnight
    stay(m2, a2, at(change, 23, 30), at(change, 1, plus_days=1))
    days = [eve, change, change + timedelta(days=1)]
    actual = sql_matches_python(days)
    # U1's stay from 22:00 to 04:00 spans 2 hours of the eve and 4 or 5 hours of
    # the day of the change (5 in autumn, when 02:00-03:00 happens twice).
    hours = 3 if change.month == 3 else 5
    assert actual[(eve, world.a.pk, "U1")][1] == 120
    assert actual[(change, world.a.pk, "U1")][1] == hours * 60


def test_late_webhook_is_counted_in_its_day_by_the_incremental_run(scene):
    """A stay recorded after the watermark, for a day long past, re-rolls that day only."""
    d = scene
    rollup_incremental()
    before = rows()
    assert before[(d, None, "")][0] == 3
    state = RollupState.objects.get(name="usage")
    # Everything so far is older than the watermark and its overlap.
    old = state.watermark - timedelta(hours=1)
    ParticipantSession.objects.update(updated_at=old)
    MeetingSession.objects.update(updated_at=old)
    DailyUsage.objects.filter(day=d + timedelta(days=1)).update(meetings=99)  # marker

    late = AgentFactory(ministry=Ministry.objects.get(code="alpha"))
    m = meeting(late.ministry, at(d, 16), at(d, 17))
    stay(m, late, at(d, 16), at(d, 16, 30))
    rollup_incremental()
    after = rows()
    assert after[(d, None, "")] == (4, 295, 7, 3, 3600)
    assert after[(d, "alpha", "")] == (3, 165, 4, 2, 3600)
    # Untouched days were not recomputed (the marker is still there).
    assert after[(d + timedelta(days=1), None, "")][0] == 99
    assert RollupState.objects.get(name="usage").watermark > state.watermark


def test_incremental_run_with_nothing_new_writes_nothing(scene):
    """A second incremental run, with no session changed, writes no row."""
    rollup_incremental()
    RollupState.objects.update(watermark=timezone.now() + timedelta(hours=1))
    assert rollup_incremental(now=timezone.now() + timedelta(hours=2)) == 0


def test_days_older_than_retention_are_kept(scene):
    """A range reaching past what retention keeps leaves those old rows alone."""
    old = timezone.localdate() - timedelta(days=3000)
    DailyUsageFactory(day=old, meetings=5)
    rollup_days(old, old)
    assert DailyUsage.objects.get(day=old).meetings == 5


def test_beat_runs_the_rollup_and_retention_on_the_reports_queue():
    """Beat schedules both usage tasks, and they go to the reports queue."""
    from django.conf import settings

    from controlplane.celery import app

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"usage.tasks.usage_rollup", "usage.tasks.usage_retention"} <= tasks
    for name in ("usage.tasks.usage_rollup", "usage.tasks.usage_retention"):
        assert app.amqp.router.route({}, name)["queue"].name == "reports"


def test_the_task_rolls_up_what_changed(scene):
    """The beat task runs the incremental roll-up."""
    from usage.tasks import usage_rollup

    assert usage_rollup.delay().get() == 9
