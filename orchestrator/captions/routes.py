"""The captions concern's URLs; orchestrator/routes.py includes them."""

from __future__ import annotations

from aiohttp import web

from orchestrator.captions import api, corrections, editing, events_api, pages, streams
from orchestrator.web import read_tokens

PID = r"{pid:[^/.]+}"


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get("/r/{room}/captions", pages.captions_page, name="captions"),
        web.get("/r/{room}/captions/stream", streams.sse, name="captions_stream"),
        web.get("/r/{room}/captions.txt", streams.text, name="captions_text"),
        web.get("/r/{room}/transcripts", pages.transcripts_page, name="transcripts"),
        web.get(f"/pid/{PID}", pages.pid, name="pid"),
        web.get(f"/pid/{PID}.{{ext:txt|vtt|srt|json}}", pages.pid, name="pid_export"),
        web.get("/api/v1/rooms/{room}/captions", api.poll),
        web.post("/api/v1/rooms/{room}/captions", api.post_captions),
        web.post("/api/v1/captions", api.post_batch),  # captioners (docs/protocols.md delivery)
        web.delete(f"/api/v1/transcripts/{PID}", api.withdraw),
        web.post("/api/v1/jigasi", api.jigasi_post),
        web.post("/api/v1/jigasi/{secret}", api.jigasi_post),
        # Captioners (docs/corrections.md): the editing view, corrections, typed captions.
        web.get("/r/{room}/captions/edit", editing.view, name="captions_edit"),
        web.post("/r/{room}/captions/edit", editing.act),
        web.post(
            r"/api/v1/rooms/{room}/captions/{seq:\d+}/corrections", corrections.post_correction
        ),  # fmt: skip
        web.post("/api/v1/rooms/{room}/captions/typed", corrections.post_typed),
        web.get("/api/v1/rooms/{room}/captions/typed/ws", corrections.typed_ws),
        web.post(events_api.PATH, events_api.post_event),  # Prosody: docs/jitsi-events.md
        # Personal read tokens, made and revoked on the room page (forms, CSRF-checked).
        web.post("/r/{slug}/read-tokens", read_tokens.create, name="read_token_new"),
        web.post(r"/r/{slug}/read-tokens/{token_id:\d+}/revoke", read_tokens.revoke),
    ]
