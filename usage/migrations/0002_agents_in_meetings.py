# The figure is named for what it counts: distinct agents in meetings that day.
# A rename, so the rolled-up rows keep their values.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(
            model_name="dailyusage", old_name="active_agents", new_name="agents_in_meetings"
        ),
        migrations.AlterField(
            model_name="dailyusage",
            name="agents_in_meetings",
            field=models.PositiveIntegerField(
                default=0, verbose_name="distinct agents in meetings"
            ),
        ),
    ]
