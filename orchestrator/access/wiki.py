"""MediaWiki as an identity source (docs/protocols.md §4): OAuth 2.0 login, groups, events.

    state, verifier = new_state(), new_code_verifier()   # keep both in the session
    raise web.HTTPFound(wiki.authorize_url(state, verifier, redirect_uri))
    ... the wiki sends the browser back with ?code=…&state=…
    if not states_match(session_state, request.query["state"]): refuse
    identity = await wiki.identity(code, verifier, redirect_uri)

The access token is used once, server-side, to read the profile and then dropped;
it is never returned. A wiki that cannot be reached, times out or answers 5xx raises
IdentitySourceUnavailable; a refused code or verifier raises OAuthError.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from orchestrator.access.errors import (
    IdentitySourceUnavailable,
    OAuthError,
    UnknownEvent,
)
from orchestrator.access.identity import Identity
from plenary.settings import WikiSettings

log = logging.getLogger(__name__)

PAGE_SIZE = 20  # CampaignEvents participants per page
MAX_PAGES = 1000  # 20,000 participants: beyond this a wiki is answering nonsense


def new_state() -> str:
    """An unguessable OAuth ``state`` value (256 bits)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE code verifier: 64 characters from the unreserved set (RFC 7636 §4.1)."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """The S256 challenge of a verifier: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def states_match(expected: str | None, received: str | None) -> bool:
    """Constant-time comparison of the session's state with the one the wiki sent back."""
    if not expected or not received:
        return False
    return hmac.compare_digest(expected.encode(), received.encode())


def normalize_username(name: str) -> str:
    """MediaWiki's spelling of a user name: spaces for underscores, first letter upper."""
    name = " ".join(name.replace("_", " ").split())
    return name[:1].upper() + name[1:]


class MediaWiki:
    """One wiki, reached through the app's aiohttp session."""

    def __init__(
        self,
        settings: WikiSettings,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._session = session
        self._clock = clock
        base = settings.url + settings.script_path
        self._rest = base + "/rest.php"
        self._api = base + "/api.php"
        self._participants: dict[int, tuple[float, frozenset[str]]] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    # OAuth 2.0 authorization code with PKCE --------------------------------------

    def authorize_url(self, state: str, code_verifier: str, redirect_uri: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{self._rest}/oauth2/authorize?{query}"

    async def identity(self, code: str, code_verifier: str, redirect_uri: str) -> Identity:
        """Trade the code for a token, read the profile with it, forget the token."""
        if not code:
            raise OAuthError("the wiki sent no authorization code")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.settings.client_id,
            "client_secret": self.settings.client_secret,
            "code_verifier": code_verifier,
        }
        status, body = await self._request("POST", f"{self._rest}/oauth2/access_token", data=form)
        if status != 200 or not isinstance(body, dict) or not body.get("access_token"):
            detail = body.get("error", status) if isinstance(body, dict) else status
            raise OAuthError(f"the wiki refused the login ({detail}); please try again")
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        status, profile = await self._request(
            "GET", f"{self._rest}/oauth2/resource/profile", headers=headers
        )
        if status != 200 or not isinstance(profile, dict) or "sub" not in profile:
            raise OAuthError(f"the wiki did not give the profile (HTTP {status})")
        return _identity_from_profile(profile)

    # Action API ------------------------------------------------------------------

    async def global_groups(self, username: str) -> frozenset[str]:
        """Global (CentralAuth) groups; empty for a user without a global account."""
        params = {
            "action": "query",
            "meta": "globaluserinfo",
            "guiuser": normalize_username(username),
            "guiprop": "groups",
            "format": "json",
            "formatversion": "2",
        }
        status, body = await self._request("GET", self._api, params=params)
        info = body.get("query", {}).get("globaluserinfo", {}) if isinstance(body, dict) else {}
        if status != 200 or not isinstance(info, dict):
            raise IdentitySourceUnavailable(self._down(f"HTTP {status} from the Action API"))
        if "missing" in info:
            return frozenset()
        return frozenset(str(g) for g in info.get("groups", []))

    # CampaignEvents ----------------------------------------------------------------

    async def event(self, event_id: int) -> dict[str, Any]:
        """The event registration (name, start_time, end_time, timezone, meeting_url…)."""
        status, body = await self._request(
            "GET", f"{self._rest}/campaignevents/v0/event_registration/{int(event_id)}"
        )
        if status == 404:
            raise UnknownEvent(f"wiki event {event_id} does not exist")
        if status != 200 or not isinstance(body, dict):
            raise IdentitySourceUnavailable(self._down(f"HTTP {status} for event {event_id}"))
        return body

    async def event_participants(self, event_id: int) -> frozenset[str]:
        """User names of the event's public participants, every page; cached briefly.

        Participants who registered privately are not listed by the wiki
        (include_private=false), so they cannot be matched.
        """
        now = self._clock()
        cached = self._participants.get(event_id)
        if cached and cached[0] > now:
            return cached[1]
        lock = self._locks.setdefault(event_id, asyncio.Lock())
        async with lock:  # one fetch per event, however many people join at once
            cached = self._participants.get(event_id)
            if cached and cached[0] > self._clock():
                return cached[1]
            names = await self._fetch_participants(event_id)
            self._participants[event_id] = (
                self._clock() + self.settings.event_cache_seconds,
                names,
            )
            return names

    async def _fetch_participants(self, event_id: int) -> frozenset[str]:
        url = f"{self._rest}/campaignevents/v0/event_registration/{int(event_id)}/participants"
        names: set[str] = set()
        seen: set[int] = set()
        last: int | None = None
        for _ in range(MAX_PAGES):
            params = {"include_private": "false"}
            if last is not None:
                params["last_participant_id"] = str(last)
            status, page = await self._request("GET", url, params=params)
            if status == 404:
                raise UnknownEvent(f"wiki event {event_id} does not exist")
            if status != 200 or not isinstance(page, list):
                raise IdentitySourceUnavailable(
                    self._down(f"HTTP {status} for the participants of event {event_id}")
                )
            try:
                ids = [int(p["participant_id"]) for p in page]
                page_names = [str(p.get("user_name") or "") for p in page]
            except (KeyError, TypeError, ValueError, AttributeError):
                raise IdentitySourceUnavailable(
                    self._down(f"a malformed participants page for event {event_id}")
                ) from None
            fresh = len(set(ids) - seen)
            seen.update(ids)
            names.update(normalize_username(n) for n in page_names if n)
            if len(page) < PAGE_SIZE:
                return frozenset(names)
            if not fresh:
                raise IdentitySourceUnavailable(
                    self._down(f"participant pages of event {event_id} do not advance")
                )
            # The cursor is the id of the page's last participant, whatever the order.
            last = ids[-1]
        raise IdentitySourceUnavailable(self._down(f"event {event_id} has too many pages"))

    # transport -----------------------------------------------------------------------

    def _down(self, why: str) -> str:
        return f"the wiki ({self.settings.url}) is unavailable: {why}"

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """(status, JSON body or None); raises IdentitySourceUnavailable for 5xx and I/O."""
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        headers = {"Accept": "application/json", "User-Agent": "Plenary (access control)"}
        headers.update(kwargs.pop("headers", {}))
        try:
            async with self._session.request(
                method, url, timeout=timeout, headers=headers, allow_redirects=False, **kwargs
            ) as response:
                if response.status >= 500:
                    raise IdentitySourceUnavailable(self._down(f"HTTP {response.status}"))
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                return response.status, body
        except TimeoutError as exc:
            raise IdentitySourceUnavailable(
                self._down(f"no answer within {self.settings.timeout:g} s")
            ) from exc
        except aiohttp.ClientError as exc:
            raise IdentitySourceUnavailable(self._down(type(exc).__name__)) from exc


def _identity_from_profile(profile: dict[str, Any]) -> Identity:
    sub = str(profile["sub"])
    username = str(profile.get("username") or "")
    blocked = bool(profile.get("blocked", False)) or not username
    email = profile.get("email") if profile.get("email_verified") else None
    return Identity(
        source="wiki",
        user_id=sub,
        username=normalize_username(username) if username else "",
        display_name=username or "hidden user",
        email=str(email) if email else None,
        groups=frozenset(str(g) for g in profile.get("groups", [])),
        blocked=blocked,
    )
