"""How usage figures are rounded: one rule, used by the roll-up's rows and by every
figure made from them (exports, monthly reports), so that the same sums give the same
integers wherever they are shown.
"""

from __future__ import annotations


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (not negative) rounded to the nearest integer, halves
    up, in exact integers: summing durations as float seconds can land just under a
    half (1105.684908 + 1219.474135 + 1304.840957 gives 3629.9999999999995)."""
    return (2 * numerator + denominator) // (2 * denominator)
