"""accounts/0007 marks the agents a directory deleted before the field existed."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("accounts", "0006_milestone_counts_logged_in_agents")]
AFTER = [("accounts", "0007_agent_directory_attributes_deletion")]


@pytest.mark.django_db(transaction=True)
def test_deleted_and_erased_agents_are_marked():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Ministry = apps.get_model("accounts", "Ministry")
    Agent = apps.get_model("accounts", "Agent")
    ministry = Ministry.objects.create(code="mig", name="Ministère", siren="123456782")
    now = timezone.now()
    waiting = Agent.objects.create(
        email="parti@mig.gouv.fr",
        ministry=ministry,
        external_id="dir-1",
        is_active=False,
        deactivated_at=now,
        erase_after=now + timedelta(days=30),
    )
    erased = Agent.objects.create(
        email="erased-x@invalid", ministry=ministry, is_active=False, deactivated_at=now
    )
    present = Agent.objects.create(email="la@mig.gouv.fr", ministry=ministry, external_id="dir-2")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    Agent = executor.loader.project_state(AFTER).apps.get_model("accounts", "Agent")
    waiting = Agent.objects.get(pk=waiting.pk)
    assert waiting.deleted_at is not None
    assert (waiting.email, waiting.deleted_email) == (
        f"deleted-{waiting.pk}@invalid",
        "parti@mig.gouv.fr",
    )
    assert Agent.objects.get(pk=erased.pk).deleted_at is not None
    present = Agent.objects.get(pk=present.pk)
    assert present.deleted_at is None and present.email == "la@mig.gouv.fr"
    # The deleted agent's address and directory identifier are free again.
    Agent.objects.create(
        email="parti@mig.gouv.fr", ministry_id=present.ministry_id, external_id="dir-1"
    )
