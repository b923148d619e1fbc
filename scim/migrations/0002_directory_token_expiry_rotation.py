"""Directory tokens expire and rotate with an overlap (``expires_at``, ``replaced_at``).

Tokens issued before never expired: each gets its creation date plus
SCIM_TOKEN_LIFETIME_DAYS, but never less than 30 days from the migration, so that no
directory stops syncing at the deployment without the console having flagged it.
"""

from datetime import timedelta

from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def give_expiry(apps, schema_editor):
    DirectoryToken = apps.get_model("scim", "DirectoryToken")
    floor = timezone.now() + timedelta(days=30)
    lifetime = timedelta(days=settings.SCIM_TOKEN_LIFETIME_DAYS)
    for token in DirectoryToken.objects.filter(expires_at__isnull=True).only("created_at"):
        token.expires_at = max(token.created_at + lifetime, floor)
        token.save(update_fields=["expires_at"])


class Migration(migrations.Migration):
    dependencies = [
        ("scim", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="directorytoken",
            name="expires_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(give_expiry, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="directorytoken",
            name="expires_at",
            field=models.DateTimeField(),
        ),
        migrations.AddField(
            model_name="directorytoken",
            name="replaced_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RemoveConstraint(
            model_name="directorytoken",
            name="directory_token_one_live_per_ministry",
        ),
        migrations.AddConstraint(
            model_name="directorytoken",
            constraint=models.UniqueConstraint(
                condition=models.Q(("replaced_at__isnull", True), ("revoked_at__isnull", True)),
                fields=("ministry",),
                name="directory_token_one_current_per_ministry",
            ),
        ),
    ]
