"""CSRF: a random token bound to the session, required in every form POST.

Every page with a form renders ``csrf_token`` into a hidden field; this middleware
refuses any state-changing request whose ``csrf_token`` field does not equal the
session's (constant-time). The JSON API is exempt: it takes no cookies, only a
bearer token that a browser never sends by itself.
"""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import get_session

log = logging.getLogger(__name__)

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
EXEMPT_PREFIXES = ("/api/",)


def exempt(path: str) -> bool:
    return path.startswith(EXEMPT_PREFIXES)


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in SAFE or exempt(request.path):
        return await handler(request)
    session = await get_session(request)
    expected = session.get("csrf")
    given = ""
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()  # cached: the handler reads the same form
        value = form.get("csrf_token")
        given = value if isinstance(value, str) else ""
    if (
        not isinstance(expected, str)
        or not given
        or not hmac.compare_digest(expected.encode(), given.encode())
    ):
        log.warning("CSRF check failed: %s %s from %s", request.method, request.path,
                    request.remote)  # fmt: skip
        from orchestrator.web.pages import page

        return await page(
            request,
            "error.html",
            {
                "heading": "This form has expired",
                "message": "The form was not accepted because its security token was missing "
                "or out of date. Go back, reload the page and send it again.",
            },
            status=403,
        )
    return await handler(request)
