"""Typed application keys shared by the captioner's app factory and views."""

from __future__ import annotations

from aiohttp import web

from bots.captioner.engine import Engine
from plenary.bus import CaptionBus
from plenary.settings import Settings

settings_key = web.AppKey("settings", Settings)
engine_key = web.AppKey("engine", Engine)
bus_key = web.AppKey("bus", CaptionBus)
