"""Typed application keys: the orchestrator's shared objects, never module globals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jinja2
from aiohttp import web

from orchestrator.db import Database
from plenary.fanout import FanOut
from plenary.settings import Settings

if TYPE_CHECKING:  # orchestrator.captions imports these keys
    from orchestrator.captions.model import Item

settings_key = web.AppKey("settings", Settings)
db_key = web.AppKey("db", Database)
# Stored captions, corrections and live partials to each room's live readers; one too
# slow is dropped and resumes from its position (orchestrator.captions.service.live_fanout).
live_key: web.AppKey[FanOut[Item]] = web.AppKey("live_captions")
templates_key = web.AppKey("templates", jinja2.Environment)
