"""Typed application keys of the captioner's app (its factory and views)."""

from __future__ import annotations

from aiohttp import web

from bots.captioner.engine import Engine
from plenary.events import CaptionEvent
from plenary.fanout import FanOut
from plenary.settings import Settings

captioner_settings_key = web.AppKey("captioner_settings", Settings)
engine_key = web.AppKey("engine", Engine)
# Every caption the captioner makes (drop-oldest: its readers cannot resume).
captioner_bus_key = web.AppKey("captioner_bus", FanOut[CaptionEvent])
