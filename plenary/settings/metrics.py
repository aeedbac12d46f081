"""Prometheus metrics: the videobridges and Jicofo polled, host metrics (orchestrator/jvb.py)."""

from __future__ import annotations

from pydantic import Field

from plenary.settings.base import Section


class MetricsSettings(Section):
    """What /metrics exports besides Plenary's own counters."""

    bridges: list[str] = Field(
        default_factory=list,
        description="Jitsi videobridge statistics URLs polled for /metrics, e.g. "
        "['http://127.0.0.1:8080/colibri/stats'] (needs videobridge.apis.rest.enabled).",
    )
    jicofo: str = Field(
        "", description="Jicofo statistics URL, e.g. 'http://127.0.0.1:8888/stats'; empty: none."
    )
    poll_interval: float = Field(
        15.0,
        ge=1,
        le=3600,
        description="Seconds between two polls of the videobridges and Jicofo, and between "
        "two refreshes of the rooms-by-state gauge (independent of Prometheus' scrapes).",
    )
    poll_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds a videobridge or Jicofo poll may take."
    )
    host: bool = Field(
        False,
        description="Export host CPU, memory, load average and network bytes from /proc "
        "(for hosts without node_exporter).",
    )
