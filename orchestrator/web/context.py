"""Identity sources for the web layer, opened with the app and closed with it.

A source already put on the app (tests inject fakes or pre-built clients) is kept.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from orchestrator.access.ldap import LdapDirectory
from orchestrator.access.login_limits import login_limits
from orchestrator.access.wiki import MediaWiki
from orchestrator.app_keys import db_key, settings_key
from orchestrator.web.web_keys import directory_key, limiter_key, wiki_key


async def access_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    if limiter_key not in app:
        # in the database when nodes share PostgreSQL, else in memory (needs database_ctx)
        app[limiter_key] = login_limits(settings.orchestrator.login, app[db_key])
    directory: LdapDirectory | None = None
    if settings.ldap.enabled and directory_key not in app:
        directory = LdapDirectory(settings.ldap)
        app[directory_key] = directory
    http: aiohttp.ClientSession | None = None
    if settings.wiki.enabled and wiki_key not in app:
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.wiki.timeout))
        app[wiki_key] = MediaWiki(settings.wiki, http)
    yield
    if directory is not None:
        await directory.close()
    if http is not None:
        await http.close()
