"""The chain head may only move forward: no DELETE, no smaller sequence.

Together with the append-only events, removing the trail's tail now needs the
triggers disabled by the tables' owner (production runs as another role).
"""

from django.db import migrations

from audit.triggers import execute_for_vendor

POSTGRES_UP = """
CREATE OR REPLACE FUNCTION audit_head_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.sequence < OLD.sequence THEN
        RAISE EXCEPTION 'the audit chain head only moves forward (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_head_forward_only
    BEFORE UPDATE OR DELETE ON audit_auditchainhead
    FOR EACH ROW EXECUTE FUNCTION audit_head_guard();
"""
POSTGRES_DOWN = """
DROP TRIGGER IF EXISTS audit_head_forward_only ON audit_auditchainhead;
DROP FUNCTION IF EXISTS audit_head_guard();
"""
SQLITE_UP = [
    """CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_auditchainhead
       BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward'); END;""",
    """CREATE TRIGGER audit_head_no_rewind BEFORE UPDATE ON audit_auditchainhead
       WHEN NEW.sequence < OLD.sequence
       BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward'); END;""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS audit_head_no_delete;",
    "DROP TRIGGER IF EXISTS audit_head_no_rewind;",
]


def install(apps, schema_editor):
    execute_for_vendor(schema_editor, postgresql=POSTGRES_UP, sqlite=SQLITE_UP)


def uninstall(apps, schema_editor):
    execute_for_vendor(schema_editor, postgresql=POSTGRES_DOWN, sqlite=SQLITE_DOWN)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]
    operations = [migrations.RunPython(install, uninstall)]
