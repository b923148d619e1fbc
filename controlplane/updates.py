"""One way to change a row's fields and say what changed, for the audit trail.

Every update service (a ministry, an agent, a room, a directory's user) sets the
fields it was given and records in its audit event each field that changed, from
what to what. ``fields_apply`` does both, so the diff an auditor reads is always the
same shape: ``{"name": {"from": old, "to": new}}``, nothing for an unchanged field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def fields_apply(obj: Any, fields: Mapping[str, Any], *, allowed: Iterable[str]) -> dict:
    """Set ``fields`` on ``obj`` (not saved) and return the changes, field by field.

    A name outside ``allowed`` is the caller's bug (the edges pass only what their
    serializers know), so it raises ValueError before anything is set."""
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {type(obj).__name__} fields: {', '.join(unknown)}")
    changes = {}
    for name, value in fields.items():
        before = getattr(obj, name)
        if before != value:
            changes[name] = {"from": before, "to": value}
            setattr(obj, name, value)
    return changes
