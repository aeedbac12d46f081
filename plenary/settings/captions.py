"""The caption store: producers, readers, sessions, retention, live streams, corrections."""

from __future__ import annotations

from pydantic import Field

from plenary.settings.base import Secret, Section


class CaptionsSettings(Section):
    """The caption store, its live streams and transcripts (orchestrator/captions)."""

    producer_token: Secret = Field(
        "",
        description="Bearer token of other programs posting to POST "
        "/api/v1/rooms/<room>/captions; captioners use captions.producers, and withdrawing "
        "transcripts takes orchestrator.admin_token.",
    )
    producers: dict[str, Secret] = Field(
        default_factory=dict,
        description="Caption producers and their bearer tokens, e.g. {captioner-1 = '<token>'}; "
        "each captioner host gets its own, so one can be revoked alone.",
    )
    service_readers: dict[str, Secret] = Field(
        default_factory=dict,
        description="Services that read every room's captions and channel keys, and their "
        "bearer tokens, e.g. {irc-relay = '<token>'}; `plenary serve` adds its own relay's.",
    )
    accept_unknown_rooms: bool = Field(
        False,
        description="Accept captions for a room that does not exist (else 404); Jitsi "
        "meetings whose room Plenary does not know are then captioned under their name.",
    )
    event_sync_secret: Secret = Field(
        "",
        description="Bearer secret of Prosody's meeting and occupant posts (event_sync's "
        "api_headers and mod_plenary_occupants) to /api/v1/events/…; empty: refused. "
        "Setup: docs/jitsi-events.md.",
    )
    jigasi_secret: Secret = Field(
        "",
        description="Shared secret of Jigasi's SEND_JSON_REMOTE_URLS posts (in the URL "
        "/api/v1/jigasi/<secret> or the X-Plenary-Secret header); empty: Jigasi posts refused.",
    )
    session_gap_minutes: float = Field(
        30.0,
        gt=0,
        description="A caption after this many minutes without one starts a new caption "
        "session (and transcript); Jigasi START and END also start and end sessions.",
    )
    retention_days: int = Field(
        90,
        ge=0,
        description="Days a session's transcript is kept after its last caption (0: forever); "
        "a room's own value, when it has one, wins.",
    )
    live_only_rooms: list[str] = Field(
        default_factory=list,
        description="Rooms whose captions are live only: shown and streamed, never stored.",
    )
    retention_interval_seconds: float = Field(
        3600.0, gt=0, description="How often expired transcripts are removed."
    )
    subscriber_queue: int = Field(
        256,
        ge=1,
        description="Events a live subscriber may fall behind before it is dropped (with a "
        "final message; it resumes with Last-Event-ID).",
    )
    heartbeat_seconds: float = Field(
        15.0, gt=0, description="Seconds between SSE heartbeat comments on an idle stream."
    )
    page_lines: int = Field(
        50, ge=1, le=1000, description="Latest captions shown on the captions page's first view."
    )
    text_backlog: int = Field(
        10, ge=0, description="Earlier captions the plain-text stream prints before live ones."
    )
    correction_window_hours: float = Field(
        24.0,
        ge=0,
        description="Hours after its session ended (or, live only, after the room's last "
        "caption) a caption may still be corrected by a captioner (docs/corrections.md).",
    )
    corrections_per_minute: int = Field(
        60, ge=1, description="Corrections and typed captions one captioner may send a minute."
    )
    max_correction_chars: int = Field(
        2000, ge=1, description="Longest corrected or typed caption text, in characters."
    )
