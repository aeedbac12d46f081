"""The orchestrator's app factory: wires settings, database, templates and routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from orchestrator import metrics
from orchestrator.app_keys import db_key, live_key, settings_key, templates_key
from orchestrator.captions import captions_ctx, close_streams
from orchestrator.captions.service import live_fanout
from orchestrator.db import Database, configured
from orchestrator.render import environment
from orchestrator.routes import routes
from orchestrator.web.context import access_ctx
from orchestrator.web.csrf import csrf
from orchestrator.web.proxy import forwarded_for
from orchestrator.web.sessions import sessions, sessions_ctx
from plenary.settings import Settings


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    app[db_key] = await Database.open(configured(app[settings_key].orchestrator))
    yield
    await app[db_key].close()


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    )
    return response


def create_app(settings: Settings) -> web.Application:
    # sessions must wrap csrf: csrf reads the session's token through get_session.
    # forwarded_for comes first: every later middleware and handler sees the client.
    app = web.Application(middlewares=[forwarded_for(settings), security_headers, sessions, csrf])
    app[settings_key] = settings
    app[live_key] = live_fanout(settings.captions.subscriber_queue)  # captions to live readers
    app[templates_key] = environment()
    app.cleanup_ctx.append(database_ctx)
    # sessions_ctx may read or make the cookie key in the database: after database_ctx.
    app.cleanup_ctx.append(sessions_ctx)
    app.cleanup_ctx.append(access_ctx)  # LDAP pool, wiki client, login limiter
    # captions_ctx stores caption events, so it must come after database_ctx.
    app.cleanup_ctx.append(captions_ctx)
    app.on_shutdown.append(close_streams)
    app.add_routes(routes())
    app.cleanup_ctx.append(metrics.metrics_ctx)  # the registry and the bridge poller
    app.add_routes(metrics.routes())
    return app
