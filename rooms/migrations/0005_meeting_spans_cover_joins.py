"""Meetings' spans cover their participants' joins (``rooms.webhooks._cover``), which
the usage roll-up relies on to find a meeting's sessions: widen the spans of meetings
recorded before that rule, and mark them changed for the incremental roll-up."""

from django.db import migrations
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Now


def cover(apps, schema_editor):
    Meeting = apps.get_model("rooms", "MeetingSession")
    Participant = apps.get_model("rooms", "ParticipantSession")
    joins = Participant.objects.filter(meeting=OuterRef("pk")).values("joined_at")
    first = joins.order_by("joined_at")[:1]
    last = joins.order_by("-joined_at")[:1]
    Meeting.objects.annotate(first=Subquery(first)).filter(first__lt=F("started_at")).update(
        started_at=Subquery(first), updated_at=Now()
    )
    Meeting.objects.filter(ended_at__isnull=False).annotate(last=Subquery(last)).filter(
        last__gt=F("ended_at")
    ).update(ended_at=Subquery(last), updated_at=Now())


class Migration(migrations.Migration):
    dependencies = [("rooms", "0004_rollup_indexes")]

    operations = [migrations.RunPython(cover, migrations.RunPython.noop)]
