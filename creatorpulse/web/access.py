"""Who may use the worker's HTTP port: anyone on loopback, or whoever holds the token.

Bound to any address but loopback, the port needs a bearer token (from
CREATORPULSE_WEB_TOKEN or the file CREATORPULSE_WEB_TOKEN_FILE names) and refuses to
start without one. Requests carry it as ``Authorization: Bearer <token>``; a browser,
whose EventSource cannot set headers, opens ``/?token=<token>`` once and keeps it in an
HttpOnly cookie.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

COOKIE = "creatorpulse_token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_token(request: web.Request) -> str | None:
    """The token a request carries: the Authorization header, else the cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE)


def token_matches(presented: str | None, token: str) -> bool:
    # Compared in constant time: the answer's timing says nothing about the token.
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


def require_token(token: str) -> Any:
    """An aiohttp middleware answering 401 to any request without ``token``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token_matches(presented_token(request), token):
            return await handler(request)
        offered = request.query.get("token")
        if request.method == "GET" and token_matches(offered, token):
            # The page's own link with the token: keep it in a cookie, drop it from the URL.
            location = str(request.rel_url.without_query_params("token"))
            response = web.Response(status=302, headers={"Location": location})
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response
        return web.json_response(
            {"error": "missing or wrong bearer token (Authorization: Bearer <token>)"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="creatorpulse"'},
        )

    return middleware
