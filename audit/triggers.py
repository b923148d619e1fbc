"""Install database triggers written for each engine the project runs on (migrations)."""


def execute_for_vendor(schema_editor, *, postgresql: str, sqlite: list[str]) -> None:
    """Run the PostgreSQL script or the SQLite statements; refuse any other engine."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # No parameters: the script's '%' placeholders belong to PL/pgSQL.
        schema_editor.execute(postgresql, params=None)
    elif vendor == "sqlite":
        for statement in sqlite:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"No audit triggers written for database {vendor!r}.")
