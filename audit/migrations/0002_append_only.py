"""Make the audit trail append-only in the database itself.

A PostgreSQL trigger refuses UPDATE and DELETE on events, so neither a bug nor a
stray ``manage.py shell`` can rewrite history.
"""

from django.db import migrations

# One statement per item, run without parameters: the '%' belong to PL/pgSQL.
POSTGRES_UP = [
    """
CREATE OR REPLACE FUNCTION audit_event_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
""",
    """
CREATE TRIGGER audit_event_append_only
    BEFORE UPDATE OR DELETE ON audit_auditevent
    FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent;",
    "DROP FUNCTION IF EXISTS audit_event_refuse_change();",
]


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunSQL(sql=POSTGRES_UP, reverse_sql=POSTGRES_DOWN)]
