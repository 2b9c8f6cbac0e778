"""What every HTTP request passes through: the bearer-token and role check (the rights themselves are
in dispatcher/access.py) and the rule that every error, including aiohttp's own (unknown path, wrong
method, body too large), is JSON in words."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from dispatcher import access, metrics
from dispatcher.settings import Settings
from dispatcher.state.layout import is_unavailable

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/v1/health", "/metrics", "/openapi.json"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, message: str) -> web.Response:
    return web.Response(body=orjson.dumps({"error": message}), status=status, content_type="application/json")


def rejected(status: int, message: str, endpoint: str) -> web.Response:
    """An error answer, counted by endpoint and status: the handlers' own refusals and those made
    here before any endpoint saw the request ("auth", "unrouted", "body"), so a panel misses none."""
    metrics.http_rejected_total.labels(endpoint, str(status)).inc()
    return error_response(status, message)


def make_middleware(
    settings: Settings, *, lead_owner: access.LeadOwner
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The guard: who the caller is (401 when unknown), whether its role may make this call (403 with
    the reason, decided by dispatcher/access.py), and who acted, as `request["actor"]` for the views."""
    keyring = access.load_keyring(settings)

    def presented_token(request: web.Request) -> tuple[str, str]:
        """The token the caller presents, or "" and why none can be used."""
        if header := request.headers.get("Authorization", ""):
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip(), ""
            return "", "the Authorization header must be: Bearer <token>"
        if "access_token" in request.query:
            if access.accepts_query_token(request.method, request.path):
                return request.query["access_token"], ""
            return "", ("a token in the URL (?access_token=) is accepted only by the live page and the event "
                        "streams; send the header Authorization: Bearer <token>")
        return "", "missing bearer token (send Authorization: Bearer <token>)"

    def unauthorized(message: str) -> web.Response:
        response = rejected(401, message, "auth")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    async def forbidden(request: web.Request, principal: access.Principal) -> str | None:
        match_info = request.match_info
        if match_info.http_exception is not None:
            return None  # unrouted: the handler answers 404 or 405, to any known token
        return await access.refusal(principal, request.method, match_info.route.resource.canonical,
                                    request.path, match_info, lead_owner)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        request["actor"] = access.ANONYMOUS
        # A rep's token acts only for its rep; the steps that must check it atomically take this.
        request["rep_id"] = None
        try:
            if keyring and request.path not in OPEN_PATHS:
                token, problem = presented_token(request)
                if not token:
                    return unauthorized(problem)
                if (principal := keyring.identify(token)) is None:
                    return unauthorized("unknown bearer token: it is not one of the configured API tokens")
                request["actor"] = principal.actor
                request["rep_id"] = principal.rep_id if principal.role == "rep" else None
                if reason := await forbidden(request, principal):
                    return rejected(403, reason, "auth")
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return rejected(413, f"body is larger than the limit of {settings.max_body_bytes} bytes", "body")
        except web.HTTPNotFound:
            return rejected(404, f"no such endpoint: {request.method} {request.path}", "unrouted")
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            response = rejected(405, f"{request.method} is not allowed on {request.path}; allowed: {allowed}", "unrouted")
            response.headers["Allow"] = allowed  # RFC 9110: a 405 names the methods that are allowed
            return response
        except web.HTTPException:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                # Nothing was changed (each step is one script); the caller can send it again.
                metrics.redis_unavailable_total.labels("http").inc()
                return rejected(503, f"redis cannot take this request now ({exc}); send it again shortly", "redis")
            log.exception("request %s %s failed", request.method, request.path)
            return error_response(500, f"internal error while handling {request.method} {request.path}: {exc}")

    return guard
