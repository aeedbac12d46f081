"""Room fixtures shared by the rooms and web tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def room_json(slug: str = "keynote", **over: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=1, minute=0, second=0, microsecond=0, tzinfo=None
    )
    body: dict[str, Any] = {
        "slug": slug,
        "title": "Keynote",
        "description": "Opening session",
        "languages": ["ko", "en"],
        "schedule": {
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "timezone": "UTC",
        },
        "policy": {"access": [{"kind": "anyone"}], "moderators": []},
        "contact": "events@example.org",
        "low_bandwidth": True,
        "irc_channel": "#keynote",
        "transcript_retention_days": 30,
    }
    body.update(over)
    return body
