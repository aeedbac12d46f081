"""Jinja2 rendering with autoescaping on: every value reaching HTML is escaped."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from orchestrator.app_keys import templates_key


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("orchestrator", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    page = request.app[templates_key].get_template(template)
    html = page.render(request=request, **context)
    return web.Response(text=html, content_type="text/html", charset="utf-8", status=status)
