"""Thin handlers for the orchestrator's own pages; each concern keeps its views beside it."""

from __future__ import annotations

from aiohttp import web

from orchestrator.keys import db_key
from orchestrator.render import render


async def index(request: web.Request) -> web.Response:
    return render(request, "index.html", {})


async def health(request: web.Request) -> web.Response:
    db = request.app[db_key]
    await db.read(lambda c: c.execute("SELECT 1").fetchone())
    return web.json_response({"status": "ok"})
