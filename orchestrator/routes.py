"""Every URL of the orchestrator in one table."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from orchestrator import views
from orchestrator.captions.routes import routes as caption_routes
from orchestrator.irc_channels import routes as irc_routes
from orchestrator.rooms.api import api_routes
from orchestrator.web.routes import web_routes

STATIC = Path(__file__).parent / "static"


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/healthz", views.health),
        web.static("/static", STATIC),
        *api_routes(),
        *web_routes(),
        *caption_routes(),
        *irc_routes(),
    ]
