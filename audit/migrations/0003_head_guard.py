"""The chain head may only move forward: no DELETE, no smaller sequence.

Together with the append-only events, removing the trail's tail now needs the
triggers disabled by the tables' owner (production runs as another role).
"""

from django.db import migrations

# One statement per item, run without parameters: the '%' belong to PL/pgSQL.
POSTGRES_UP = [
    """
CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.sequence < OLD.sequence THEN
        RAISE EXCEPTION 'the audit chain head only moves forward (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
""",
    """
CREATE TRIGGER audit_head_forward_only
    BEFORE UPDATE OR DELETE ON audit_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION audit_head_guard();
""",
]
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS audit_head_forward_only ON audit_auditchainhead;",
    "DROP FUNCTION IF EXISTS audit_head_guard();",
]


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]
    operations = [migrations.RunSQL(sql=POSTGRES_UP, reverse_sql=POSTGRES_DOWN)]
