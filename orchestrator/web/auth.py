"""Login and logout: LDAP (user name + password) and the wiki (OAuth 2.0 + PKCE).

An identity source that cannot answer gives a 503 page that says so; nobody is
ever let in because a source was down. Failed LDAP logins are limited per account,
per (address, account) and, with a growing delay rather than a lockout, per address
(orchestrator/access/ratelimit.py; kept in the database when nodes share PostgreSQL:
orchestrator/access/login_limits.py); wiki logins are not: the wiki checks passwords
and limits them itself, and Plenary only sees the OAuth code. The wiki's tokens stay
on the server: the browser only carries ``state`` and the PKCE verifier inside the
encrypted session cookie.
"""

from __future__ import annotations

import logging
import math

from aiohttp import web
from aiohttp_session import get_session

from orchestrator import metrics
from orchestrator.access.errors import IdentitySourceUnavailable, InvalidCredentials, OAuthError
from orchestrator.access.ratelimit import Wait
from orchestrator.access.wiki import new_code_verifier, new_state, states_match
from orchestrator.app_keys import settings_key
from orchestrator.web.pages import page, safe_next
from orchestrator.web.sessions import log_in, log_out
from orchestrator.web.web_keys import directory_key, limiter_key, wiki_key

log = logging.getLogger(__name__)

CALLBACK = "/login/wiki/callback"


def _form_text(form: object, name: str) -> str:
    value = form.get(name) if hasattr(form, "get") else None
    return value if isinstance(value, str) else ""


async def login_page(request: web.Request) -> web.Response:
    nxt = safe_next(request.query.get("next"))
    return await page(request, "login.html", {"next": nxt, "error": None, "username": ""})


async def _unavailable(request: web.Request, what: str) -> web.Response:
    return await page(
        request,
        "error.html",
        {
            "heading": f"The {what} is unavailable",
            "message": f"Plenary cannot reach the {what} right now, so nobody can log in "
            f"with it. Please try again in a few minutes; if it persists, tell the "
            "event's organizers.",
        },
        status=503,
    )


async def login_ldap(request: web.Request) -> web.Response:
    form = await request.post()
    username = _form_text(form, "username").strip()
    password = _form_text(form, "password")
    nxt = safe_next(_form_text(form, "next"))
    directory = request.app.get(directory_key)
    if directory is None:
        return await page(
            request,
            "error.html",
            {"heading": "Directory login is off", "message": "This server has no LDAP login."},
            status=404,
        )
    limiter = request.app[limiter_key]
    address = request.remote or "unknown"
    wait = await limiter.wait(username, address)
    if wait is not None:
        return await _limited(request, nxt, username, address, wait)
    try:
        with metrics.LOGIN_SECONDS.labels(source="ldap").time():
            identity = await directory.authenticate(username, password)
    except InvalidCredentials as exc:
        await limiter.failed(username, address)
        log.info("login refused: ldap:%s from %s: %s", username, address, exc)
        metrics.ATTENDEES_DENIED.labels(reason="bad_credentials").inc()
        return await page(
            request,
            "login.html",
            {"next": nxt, "username": username, "error": "Wrong user name or password."},
            status=401,
        )
    except IdentitySourceUnavailable as exc:
        log.error("login impossible: directory unavailable: %s", exc)
        metrics.ATTENDEES_DENIED.labels(reason="source_unavailable").inc()
        return await _unavailable(request, "directory")
    # The directory's own spelling: a variant the limiter's folding missed still
    # finds the account locked (defence in depth; account_key should catch it first).
    wait = await limiter.wait(identity.username, address, per_address=False)
    if wait is not None:
        return await _limited(request, nxt, username, address, wait)
    await limiter.succeeded(username, address)
    await limiter.succeeded(identity.username, address)
    await log_in(request, identity)
    log.info("login: ldap:%s from %s", identity.username, address)
    raise web.HTTPSeeOther(nxt)


async def _limited(
    request: web.Request, nxt: str, username: str, address: str, wait: Wait
) -> web.Response:
    seconds = math.ceil(wait.seconds)
    log.warning("login limited (%s, %d s): ldap:%r from %s", wait.limit, seconds,
                username, address)  # fmt: skip
    metrics.LOGINS_LIMITED.labels(limit=wait.limit).inc()
    metrics.ATTENDEES_DENIED.labels(reason="rate_limited").inc()
    if wait.limit == "address":
        why = "Many failed logins came from your network."
    else:
        why = "Too many failed logins for this account."
    response = await page(
        request,
        "login.html",
        {"next": nxt, "username": username,
         "error": f"{why} Try again in {seconds} seconds."},
        status=429,
    )  # fmt: skip
    response.headers["Retry-After"] = str(seconds)
    return response


async def login_wiki(request: web.Request) -> web.Response:
    wiki = request.app.get(wiki_key)
    if wiki is None:
        return await page(
            request,
            "error.html",
            {"heading": "Wiki login is off", "message": "This server has no wiki login."},
            status=404,
        )
    form = await request.post()
    session = await get_session(request)
    state, verifier = new_state(), new_code_verifier()
    session["oauth"] = {"state": state, "verifier": verifier,
                        "next": safe_next(_form_text(form, "next"))}  # fmt: skip
    raise web.HTTPSeeOther(wiki.authorize_url(state, verifier, _redirect_uri(request)))


def _redirect_uri(request: web.Request) -> str:
    return request.app[settings_key].orchestrator.public_url.rstrip("/") + CALLBACK


async def wiki_callback(request: web.Request) -> web.Response:
    wiki = request.app.get(wiki_key)
    session = await get_session(request)
    pending = session.pop("oauth", None)
    if wiki is None:
        raise web.HTTPNotFound(text="This server has no wiki login.")
    if request.query.get("error"):
        return await page(
            request,
            "error.html",
            {"heading": "Wiki login cancelled",
             "message": "The wiki did not authorize the login. You can try again."},
            status=400,
        )  # fmt: skip
    expected = pending.get("state") if isinstance(pending, dict) else None
    if not states_match(expected, request.query.get("state")):
        log.warning("wiki login refused: state mismatch from %s", request.remote)
        metrics.ATTENDEES_DENIED.labels(reason="oauth_state").inc()
        return await page(
            request,
            "error.html",
            {"heading": "Login could not be verified",
             "message": "This login link was not started here or has expired. "
                        "Start again from the login page."},
            status=400,
        )  # fmt: skip
    assert isinstance(pending, dict)
    try:
        with metrics.LOGIN_SECONDS.labels(source="wiki").time():
            identity = await wiki.identity(
                request.query.get("code", ""), str(pending["verifier"]), _redirect_uri(request)
            )
    except OAuthError as exc:
        log.warning("wiki login refused: %s", exc)
        metrics.ATTENDEES_DENIED.labels(reason="oauth_refused").inc()
        return await page(
            request, "error.html", {"heading": "Wiki login failed", "message": str(exc)},
            status=400,
        )  # fmt: skip
    except IdentitySourceUnavailable as exc:
        log.error("login impossible: wiki unavailable: %s", exc)
        metrics.ATTENDEES_DENIED.labels(reason="source_unavailable").inc()
        return await _unavailable(request, "wiki")
    await log_in(request, identity)
    log.info("login: wiki:%s", identity.username or identity.user_id)
    raise web.HTTPSeeOther(safe_next(str(pending.get("next", "/"))))


async def logout(request: web.Request) -> web.Response:
    await log_out(request)
    raise web.HTTPSeeOther("/")
