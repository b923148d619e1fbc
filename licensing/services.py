"""Seats: the one question other apps ask licensing.

Licence pools arrive with the onboarding issue; until then every ministry has room,
and this seam is the only place that will change.
"""

from __future__ import annotations


def seat_available(*, ministry) -> bool:
    """Whether ``ministry`` can activate one more agent (no pools yet: always yes)."""
    return True
