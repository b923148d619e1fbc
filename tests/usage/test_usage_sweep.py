"""The roll-up's peak sweep (``usage.rollup_arrays.sweep_peaks``) against a brute force: the
most pieces present at one instant, leaves before joins at the same instant."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usage.rollup_arrays import split_by_day, sweep_peaks

# (day, ministry number, unit number, join, leave); units belong to one ministry each.
UNIT_MINISTRY = {1: 1, 2: 1, 3: 2}
piece = st.tuples(
    st.integers(0, 2),
    st.sampled_from([(0, 0), (1, 0), (2, 0), (1, 1), (1, 2), (2, 3)]),
    st.integers(0, 20),
    st.integers(0, 10),
)


def brute_force(pieces, scope_of):
    """For each (day, m, u) the max over instants of the stays present just after
    every event at that instant (leaves first, so a leave and a join at the same
    instant never overlap)."""
    peaks = {}
    for day, m, u, t0, t1 in pieces:
        for scope in scope_of(m, u):
            peaks.setdefault((day, *scope), 0)
    for key in peaks:
        day = key[0]
        mine = [(t0, t1) for d, m, u, t0, t1 in pieces if d == day and key[1:] in scope_of(m, u)]
        instants = sorted({t for stay in mine for t in stay})
        best = 0
        for t in instants:
            # Present just after t: joined at or before t, leaving after t.
            best = max(best, sum(1 for t0, t1 in mine if t0 <= t < t1))
        peaks[key] = best
    return peaks


def scopes(m, u):
    found = [(0, 0)]
    if m:
        found.append((m, 0))
    if u:
        found.append((m, u))
    return found


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(st.lists(piece, min_size=1, max_size=40))
def test_sweep_matches_brute_force(raw):
    pieces = [(day, m, u, t0, t0 + length) for day, (m, u), t0, length in raw]
    columns = {
        name: np.array([p[i] for p in pieces], dtype=np.int64)
        for i, name in enumerate(("day", "m", "u", "t0", "t1"))
    }
    # Instants as PostgreSQL sends them: microseconds since 2000, far from zero.
    columns["t0"] = columns["t0"] * 1_000_000 + 849_000_000_000_000
    columns["t1"] = columns["t1"] * 1_000_000 + 849_000_000_000_000
    found = {(day, m, u): peak for day, m, u, peak in sweep_peaks(columns, 3)}
    assert found == brute_force(pieces, scopes)


def test_sweep_counts_a_leave_and_a_join_at_the_same_instant_once():
    pieces = {
        "day": np.array([0, 0]),
        "m": np.array([1, 1]),
        "u": np.array([1, 1]),
        "t0": np.array([0, 10]),
        "t1": np.array([10, 20]),
    }
    assert sorted(sweep_peaks(pieces, 1)) == [(0, 0, 0, 1), (0, 1, 0, 1), (0, 1, 1, 1)]
    pieces["t0"][1] = 9
    assert sorted(sweep_peaks(pieces, 1)) == [(0, 0, 0, 2), (0, 1, 0, 2), (0, 1, 1, 2)]


def day_of(starts, instant):
    """The index of the day holding ``instant`` (-1 before the first, len-1 after)."""
    return sum(1 for start in starts if start <= instant) - 1


def pieces_by_definition(starts, stays):
    """The roll-up's definition, stay by stay: a stay within one day is that day's; a
    longer one belongs to every day from its join's to its leave's, a leave at midnight
    ending the day before; only the range's days count, each piece clipped to its day."""
    days = len(starts) - 1
    found = []
    for index, (t0, t1) in enumerate(stays):
        first, last = day_of(starts, t0), day_of(starts, t1)
        if first != last:
            last = day_of(starts, t1 - 1)
        for day in range(max(first, 0), min(last, days - 1) + 1):
            found.append((index, day, max(t0, starts[day]), min(t1, starts[day + 1])))
    return sorted(found)


@pytest.mark.property
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 30), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(-20, 120), st.integers(0, 60)), max_size=20),
)
def test_split_by_day_matches_the_definition(lengths, raw):
    """Stays cut at day starts (days of any length, as on DST changes), including stays
    before and after the range, across several days, and of no length at midnight."""
    starts = np.cumsum([0, *lengths]).astype(np.int64)
    stays = [(t0, t0 + length) for t0, length in raw]
    t0 = np.array([s[0] for s in stays], np.int64)
    t1 = np.array([s[1] for s in stays], np.int64)
    found = sorted(zip(*(part.tolist() for part in split_by_day(t0, t1, starts)), strict=True))
    assert found == pieces_by_definition(starts.tolist(), stays)
