"""Typed app keys of the web layer: identity sources, the login limiter, sessions."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from orchestrator.access.identity import Identity
from orchestrator.access.login_limits import LoginLimits
from orchestrator.access.wiki import MediaWiki


class Directory(Protocol):
    """What the login view needs from an LDAP directory (access.ldap.LdapDirectory)."""

    async def authenticate(self, username: str, password: str) -> Identity: ...


directory_key = web.AppKey("directory", Directory)
wiki_key = web.AppKey("wiki", MediaWiki)
limiter_key = web.AppKey("login_limiter", LoginLimits)
session_middleware_key = web.AppKey("session_middleware", Middleware)
