"""Errors of the HTTP API as RFC 9457 problem documents, and the one bearer-token check.

Every refusal of a program (rooms API, caption producers, Jigasi, Prosody's event
posts, caption readers with a token) has the same shape, ``application/problem+json``:

    {"type": "about:blank", "title": "Unauthorized", "status": 401,
     "detail": "send 'Authorization: Bearer <admin token>'"}

Validation failures add ``errors``: ``[{"field": "schedule.end", "message": "…"}]``.

    name = check_bearer(request, {"captioner-1": token}, "posting captions")
    raise problem(404, "no room named 'keynote'")
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }


def problem(
    status: int, detail: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.HTTPException:
    """An exception to raise (or a response to return) carrying a problem document."""
    cls = _CLASSES.get(status)
    body = json.dumps(problem_body(status, detail, **extra), ensure_ascii=False)
    if cls is None:  # a status without its own class (e.g. 207 is never an error)
        raise ValueError(f"no problem class for HTTP {status}")
    return cls(text=body, content_type=MEDIA_TYPE, headers=headers)


def problem_response(status: int, detail: str, **extra: Any) -> web.Response:
    """The same document as a plain response (for handlers that return their errors)."""
    response = web.json_response(
        problem_body(status, detail, **extra),
        status=status,
        content_type=MEDIA_TYPE,
        dumps=lambda o: json.dumps(o, ensure_ascii=False),
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="plenary"'
    return response


def bearer(request: web.Request) -> str:
    """The token of ``Authorization: Bearer <token>``; "" when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def match_token(given: str, tokens: Mapping[str, str]) -> str:
    """The name whose token is ``given`` (every one compared in constant time); ""."""
    found = ""
    for name, token in tokens.items():
        if token and hmac.compare_digest(given.encode(), token.encode()):
            found = name
    return found


def check_bearer(request: web.Request, tokens: Mapping[str, str], what: str, hint: str) -> str:
    """The name of the token the request carries; a problem otherwise: 403 when ``what``
    is not enabled or the token is not one of ``tokens``, 401 without a token.

    ``what`` says what the token is for ("posting captions"), ``hint`` which setting
    holds it ("captions.producers")."""
    return check_token(bearer(request), tokens, what, hint)


def check_token(given: str, tokens: Mapping[str, str], what: str, hint: str) -> str:
    """``check_bearer`` for a token that came some other way (Jigasi's URL secret)."""
    tokens = {name: token for name, token in tokens.items() if token}
    if not tokens:
        raise problem(403, f"{what} is not enabled on this server: set {hint}")
    if not given:
        raise problem(
            401,
            f"{what} needs 'Authorization: Bearer <token>' ({hint})",
            headers={"WWW-Authenticate": 'Bearer realm="plenary"'},
        )
    name = match_token(given, tokens)
    if not name:
        raise problem(403, f"the bearer token is not valid for {what} ({hint})")
    return name


_CLASSES: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    406: web.HTTPNotAcceptable,
    409: web.HTTPConflict,
    410: web.HTTPGone,
    413: web.HTTPRequestEntityTooLarge,
    415: web.HTTPUnsupportedMediaType,
    429: web.HTTPTooManyRequests,
    503: web.HTTPServiceUnavailable,
}
