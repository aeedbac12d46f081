"""A fake MediaWiki built from the documented endpoints (docs/protocols.md §4).

OAuth 2.0 (Extension:OAuth) under /w/rest.php/oauth2: authorize (the "user" who
approves is ``wiki.login_as``), access_token (checks the code, its single use, the
client id and secret, the redirect_uri and the PKCE S256 verifier) and
resource/profile; the Action API's meta=globaluserinfo; CampaignEvents'
event_registration/{id} and its participants, 20 per page by last_participant_id.

    fake = FakeWiki(); fake.add_user("Alice", groups=["sysop"])
    server = await aiohttp_server(fake.app())
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

CLIENT_ID = "plenary-client"
CLIENT_SECRET = "plenary-client-secret"
PAGE = 20


@dataclass
class WikiUser:
    sub: int
    username: str
    groups: list[str]
    global_groups: list[str]
    blocked: bool = False
    hidden: bool = False
    email: str | None = None


@dataclass
class Grant:
    user: WikiUser
    client_id: str
    redirect_uri: str
    challenge: str


@dataclass
class FakeWiki:
    users: dict[str, WikiUser] = field(default_factory=dict)
    events: dict[int, dict[str, Any]] = field(default_factory=dict)
    participants: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    login_as: str = ""
    down: bool = False  # every request answers 503
    ignore_cursor: bool = False  # a broken wiki: always the first page
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, WikiUser] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)  # "METHOD path?query"

    def add_user(
        self,
        name: str,
        *,
        groups: list[str] | None = None,
        global_groups: list[str] | None = None,
        blocked: bool = False,
        hidden: bool = False,
        email: str | None = None,
    ) -> WikiUser:
        user = WikiUser(
            sub=1000 + len(self.users),
            username=name,
            groups=["*", "user", *(groups or [])],
            global_groups=global_groups or [],
            blocked=blocked or hidden,
            hidden=hidden,
            email=email,
        )
        self.users[name] = user
        return user

    def add_event(self, event_id: int, names: list[str], *, private: tuple[str, ...] = ()) -> None:
        self.events[event_id] = {
            "id": event_id,
            "name": f"Event {event_id}",
            "event_page": f"Event:Event {event_id}",
            "status": "open",
            "timezone": "UTC",
            "start_time": "20261201120000",
            "end_time": "20261201150000",
            "online_meeting": True,
            "meeting_url": "https://meet.example.org/event",
        }
        rows = []
        for i, name in enumerate([*names, *private]):
            rows.append({
                "participant_id": 500 + 3 * i,  # ids with gaps, as in a real table
                "user_id": 2000 + i,
                "user_name": name,
                "user_registered_at": "20261101000000",
                "private": name in private,
            })  # fmt: skip
        self.participants[event_id] = rows

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.add_routes([
            web.get("/w/rest.php/oauth2/authorize", self.authorize),
            web.post("/w/rest.php/oauth2/access_token", self.access_token),
            web.get("/w/rest.php/oauth2/resource/profile", self.profile),
            web.get("/w/api.php", self.api),
            web.get("/w/rest.php/campaignevents/v0/event_registration/{id:[0-9]+}", self.event),
            web.get(
                "/w/rest.php/campaignevents/v0/event_registration/{id:[0-9]+}/participants",
                self.event_participants,
            ),
        ])  # fmt: skip
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.down:
            return web.json_response({"error": "maintenance"}, status=503)
        response: web.StreamResponse = await handler(request)
        return response

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("response_type") != "code" or q.get("client_id") != CLIENT_ID:
            return web.json_response({"error": "invalid_client"}, status=400)
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = Grant(
            self.users[self.login_as], q["client_id"], q["redirect_uri"], q["code_challenge"]
        )
        location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        raise web.HTTPFound(location)

    async def access_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant = self.codes.pop(str(form.get("code", "")), None)  # single use
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return web.json_response({"error": "invalid_grant"}, status=400)
        verifier = str(form.get("code_verifier", "")).encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if challenge.decode() != grant.challenge:
            return web.json_response(
                {"error": "invalid_grant", "message": "Failed to verify code verifier"},
                status=400,
            )
        token = secrets.token_urlsafe(24)
        self.tokens[token] = grant.user
        return web.json_response({
            "token_type": "Bearer", "expires_in": 14400, "access_token": token,
            "refresh_token": secrets.token_urlsafe(24),
        })  # fmt: skip

    async def profile(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        user = self.tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or user is None:
            return web.json_response({"error": "invalid_token"}, status=401)
        if user.hidden:
            return web.json_response({"sub": user.sub, "blocked": True})
        body: dict[str, Any] = {
            "sub": user.sub, "username": user.username, "editcount": 42,
            "confirmed_email": user.email is not None, "blocked": user.blocked,
            "registered": "20200101000000", "groups": user.groups,
            "rights": ["read", "edit"], "grants": ["basic"],
        }  # fmt: skip
        if user.email:
            body["email"] = user.email
            body["email_verified"] = True
        return web.json_response(body)

    async def api(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("action") != "query" or q.get("meta") != "globaluserinfo":
            return web.json_response({"error": {"code": "badvalue"}})
        user = self.users.get(q.get("guiuser", ""))
        if user is None:
            info: dict[str, Any] = {"missing": True}
        else:
            info = {
                "home": "metawiki",
                "id": user.sub,
                "name": user.username,
                "registration": "2020-01-01T00:00:00Z",
                "groups": user.global_groups,
            }
        return web.json_response({"batchcomplete": True, "query": {"globaluserinfo": info}})

    async def event(self, request: web.Request) -> web.Response:
        event = self.events.get(int(request.match_info["id"]))
        if event is None:
            return web.json_response({"messageTranslations": {}, "httpCode": 404}, status=404)
        return web.json_response(event)

    async def event_participants(self, request: web.Request) -> web.Response:
        event_id = int(request.match_info["id"])
        if event_id not in self.events:
            return web.json_response({"httpCode": 404}, status=404)
        rows = self.participants[event_id]
        if request.query.get("include_private", "false") != "true":
            rows = [r for r in rows if not r.get("private")]
        if self.ignore_cursor:
            return web.json_response(rows[:PAGE])
        last = int(request.query.get("last_participant_id", "0"))
        page = [r for r in rows if r["participant_id"] > last][:PAGE]
        return web.json_response(page)
