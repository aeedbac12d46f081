"""Every URL of the orchestrator in one table, and ``/healthz``."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from orchestrator.app_keys import db_key
from orchestrator.captions.routes import routes as caption_routes
from orchestrator.irc_channels import routes as irc_routes
from orchestrator.rooms.api import api_routes
from orchestrator.web.routes import web_routes

STATIC = Path(__file__).parent / "static"


async def health(request: web.Request) -> web.Response:
    """200 once the database answers."""
    async with request.app[db_key].read() as conn:
        await conn.execute(select(1))
    return web.json_response({"status": "ok"})


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/healthz", health),
        web.static("/static", STATIC),
        *api_routes(),
        *web_routes(),
        *caption_routes(),
        *irc_routes(),
    ]
