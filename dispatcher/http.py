"""What every HTTP request passes through: the bearer-token check and the rule that every error,
including aiohttp's own (unknown path, wrong method, body too large), is JSON in words."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from dispatcher import metrics
from dispatcher.settings import Settings

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/v1/health", "/metrics"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str) -> web.Response:
    return web.Response(body=orjson.dumps({"error": message}), status=status, content_type="application/json")


def rejected(status: int, message: str, endpoint: str) -> web.Response:
    """An error answer, counted by endpoint and status: the handlers' own refusals and those made
    here before any endpoint saw the request ("auth", "unrouted", "body"), so a panel misses none."""
    metrics.http_rejected_total.labels(endpoint, str(status)).inc()
    return error_response(status, message)


def make_middleware(settings: Settings) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    tokens = [token.encode() for token in settings.api_tokens]

    def presented_token(request: web.Request) -> str:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented:
            return presented.strip()
        # A browser cannot put a header on a page it navigates to or on an EventSource, so reads
        # may carry the token as ?access_token= instead (it then shows in access logs).
        return request.query.get("access_token", "") if request.method == "GET" else ""

    def authorized(request: web.Request) -> bool:
        presented = presented_token(request).encode()
        return bool(presented) and any(hmac.compare_digest(presented, token) for token in tokens)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if tokens and request.path not in OPEN_PATHS and not authorized(request):
            return rejected(401, "missing or invalid bearer token (send Authorization: Bearer <token>)", "auth")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return rejected(413, f"body is larger than the limit of {settings.max_body_bytes} bytes", "body")
        except web.HTTPNotFound:
            return rejected(404, f"no such endpoint: {request.method} {request.path}", "unrouted")
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            return rejected(405, f"{request.method} is not allowed on {request.path}; allowed: {allowed}", "unrouted")
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("request %s %s failed", request.method, request.path)
            return error_response(500, f"internal error while handling {request.method} {request.path}: {exc}")

    return guard
