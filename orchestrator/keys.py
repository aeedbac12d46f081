"""Typed application keys: the orchestrator's shared objects, never module globals."""

from __future__ import annotations

import jinja2
from aiohttp import web

from orchestrator.db import Database
from plenary.bus import CaptionBus
from plenary.settings import Settings

settings_key = web.AppKey("settings", Settings)
db_key = web.AppKey("db", Database)
bus_key = web.AppKey("bus", CaptionBus)
templates_key = web.AppKey("templates", jinja2.Environment)
