"""The hand-written SQLite migrations that Alembic replaced, kept to bring old files forward.

Before Alembic, numbered SQL files in this folder were applied in order and recorded in
``schema_migrations``. A SQLite file that has that table is brought to the last of them
(0500) here; ``orchestrator.db`` then stamps it at the baseline revision, which is the
same schema, and drops ``schema_migrations``. No new file is ever added here: schema
changes are Alembic revisions (orchestrator/alembic/versions).
"""

from __future__ import annotations

import sqlite3
from importlib import resources

from sqlalchemy import Connection, text


def migrations() -> list[tuple[int, str, str]]:
    """(number, name, sql) of every file in orchestrator/migrations, in order."""
    found = []
    for entry in resources.files("orchestrator.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def bring_forward(conn: Connection) -> list[str]:
    """Apply the files not yet recorded in ``schema_migrations`` (in the caller's
    transaction); their names."""
    done = {row[0] for row in conn.execute(text("SELECT number FROM schema_migrations"))}
    applied = []
    for number, name, sql in migrations():
        if number in done:
            continue
        for statement in statements(sql):
            conn.exec_driver_sql(statement)
        conn.execute(
            text("INSERT INTO schema_migrations VALUES (:n, :name, datetime('now'))"),
            {"n": number, "name": name},
        )
        applied.append(name)
    return applied


def statements(sql: str) -> list[str]:
    """A file's statements, one by one (executescript would end the transaction)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        # Only the parser's notion of a complete statement is used here: no connection.
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
