"""Alembic's environment for the orchestrator's database (orchestrator/schema.py).

``orchestrator.db.Database.open`` runs the migrations itself, on its own connection
inside its transaction (``config.attributes["connection"]``). From the command line,
the database is ``sqlalchemy.url`` or the ``PLENARY_ORCHESTRATOR__DATABASE_URL``
environment variable:

    export PLENARY_ORCHESTRATOR__DATABASE_URL=postgresql://…
    alembic -c orchestrator/alembic/alembic.ini history
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from orchestrator.schema import metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters most tables by copying them: batch operations do that.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    from orchestrator.db import engine_url

    engine = create_async_engine(engine_url(url)[0])
    async with engine.begin() as connection:
        await connection.run_sync(run_on)
    await engine.dispose()


def main() -> None:
    given = context.config.attributes.get("connection")
    if given is not None:
        run_on(given)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "PLENARY_ORCHESTRATOR__DATABASE_URL", ""
    )
    if not url:
        raise SystemExit("set sqlalchemy.url or PLENARY_ORCHESTRATOR__DATABASE_URL")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(run_from_url(url))


main()
