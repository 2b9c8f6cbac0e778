"""The OpenAPI 3.1 document of the HTTP API, served at GET /openapi.json.

Request bodies are the msgspec models themselves (dispatcher/models.py), so the document says what
the decoder checks; answers and errors are described here, beside the endpoint list they belong to.
tests/dispatcher/test_openapi.py holds it to the routes the worker serves, and schemathesis holds
the worker to it (tests/dispatcher/test_api_fuzz.py).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import msgspec

from dispatcher.models import (
    ID_PATTERN,
    ClaimRequest,
    CloseRequest,
    Lead,
    PresenceChange,
    ReassignRequest,
    ReleaseRequest,
    RepProfile,
)

REF = "#/components/schemas/{name}"
JSON = "application/json"
STATUSES = ["online", "away", "offline"]
LEAD_STATUSES = ["pending", "queued", "offered", "assigned", "pooled", "closed"]

# Errors every guarded call can get, and what each means here.
ERRORS = {
    "400": "the body or a path parameter is not what the call takes; the error says what and where",
    "401": "no token, or one that is not configured (sent with WWW-Authenticate: Bearer)",
    "403": "the token's role may not make this call, or a rep token acts for another rep or lead; the error says why",
    "404": "no such lead or rep",
    "409": "the change cannot be made in the current state (the error says why); nothing was changed",
    "413": "the body is larger than DISPATCHER_MAX_BODY_BYTES",
    "422": "the routing fails its check (`reasons` lists every problem), or a rep claims a lead it can never take "
           "(not a member of the queue, no such channel, a skill missing); nothing was changed",
    "503": "redis (or, for a lead, the broker) cannot take the request now; nothing was changed, send it again",
}


def _ecma(schema: Any) -> Any:
    """The models' patterns end in \\Z (Python's end of text, which `$` is not: it also matches
    before a final newline). JSON Schema patterns are ECMA-262, where `$` is the end of text and
    `\\Z` means nothing, so the document says `$`."""
    if isinstance(schema, dict):
        return {k: (v.removesuffix("\\Z") + "$" if k == "pattern" else _ecma(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_ecma(item) for item in schema]
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _schemas() -> dict[str, Any]:
    _, bodies = msgspec.json.schema_components(
        [Lead, RepProfile, PresenceChange, CloseRequest, ReassignRequest, ClaimRequest, ReleaseRequest],
        ref_template=REF
    )
    bodies = _ecma(bodies)
    profile = bodies["RepProfile"]["properties"]
    time = {"type": "string", "format": "date-time"}
    counts = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
    by_status = {"type": "object", "required": STATUSES, "properties": {s: {"type": "integer"} for s in STATUSES}}
    return {
        **bodies,
        "Error": {**_object(["error"], {"error": {"type": "string", "description": "what is wrong, in words"}}),
                  "description": "Every refusal: a 4xx (or 503) status and what is wrong, in words."},
        "Accepted": _object(["id", "status", "duplicate"], {
            "id": {"type": "string"},
            "status": {"const": "accepted"},
            "duplicate": {"type": "boolean", "description": "true when this id was accepted before"},
        }),
        "Rep": {
            **_object(["id", "status", "load", "capacity", "queues", "on_shift", "shift_changes_at"], {
                **profile,
                "id": {"type": "string"},
                "status": {"enum": STATUSES, "description": "offline as well when no heartbeat came within presence_ttl_s"},
                "load": {"anyOf": [{"type": "integer", "minimum": 0}, counts],
                         "description": "open leads, per channel where capacity is per channel"},
                "queues": {"type": "array", "items": {"type": "string"}},
                "last_seen_at": _nullable(time),
                "last_assigned_at": _nullable(time),
                "on_shift": {"type": "boolean",
                             "description": "whether its schedule has it working now (always true without a "
                                            "schedule); off shift it gets no new leads, offers, claims or drains"},
                "shift_changes_at": {**_nullable(time),
                                     "description": "when on_shift next flips by its schedule; null for never"},
            }),
            "description": "A rep: the profile as last put, its presence, its shift and its open leads.",
        },
        "Reps": _object(["reps"], {"reps": {"type": "array", "items": _ref("Rep")}}),
        "RepLeads": _object(["rep_id", "leads"], {
            "rep_id": {"type": "string"},
            "leads": {"type": "array", "items": {"type": "string"}, "description": "the rep's open lead ids"},
        }),
        "RepHistory": _object(["rep_id", "events", "next_before"], {
            "rep_id": {"type": "string"},
            "events": {"type": "array", "items": {"type": "object", "required": ["lead_id", "event", "at", "event_id"],
                                                  "properties": {"lead_id": {"type": "string"},
                                                                 "event": {"type": "string"},
                                                                 "at": {"type": "string"},
                                                                 "event_id": {"type": "string"}}},
                       "description": "as on the lead-events topic, newest first"},
            "next_before": {"type": ["string", "null"], "description": "the cursor of the next page; null at the end"},
        }),
        "LeadState": _object(["id", "status", "rep_id", "queue", "strategy", "reason", "accepted_at", "history"], {
            "id": {"type": "string"},
            "status": {"enum": LEAD_STATUSES},
            "rep_id": _nullable({"type": "string"}),
            "queue": _nullable({"type": "string"}),
            "strategy": _nullable({"type": "string"}),
            "reason": {"type": "string", "description": "why this rep was chosen, or why the lead waits, in words"},
            "channel": _nullable({"type": "string"}),
            "priority": _nullable({"type": "integer"}),
            "accepted_at": time,
            "outcome": {"type": "string"},
            "history": {"type": "array", "items": _object(["at", "event"], {
                "at": time, "event": {"type": "string"},
                "by": {"type": "string", "description": "who made a manual step (role, rep or token name)"},
            })},
        }),
        "Health": _object(["status"], {
            "status": {"enum": ["ok", "starting", "unavailable"]},
            "error": {"type": "string", "description": "why the process is not yet healthy"},
            "role": {"enum": ["all", "api"],
                     "description": "all: a worker (consumes leads and serves the API); api: `dispatcher api`"},
            "redis": {"type": "boolean"},
            "worker_id": {"type": "string"},
            "routing": {"type": "string", "description": "where the routing in force came from"},
            "routing_version": {"type": "string"},
        }),
        "Routing": _object(["version", "source", "fingerprint", "applied_at", "by", "text", "spec"], {
            "version": {"type": "string", "description": "a counter: every step is built for one version"},
            "source": {"type": "string", "description": "where it came from (a file, the built-in routing)"},
            "fingerprint": {"type": "string"},
            "applied_at": time,
            "by": _nullable({"type": "string"}),
            "text": {"type": "string", "description": "as written (YAML or JSON); empty for the built-in routing"},
            "spec": {"type": "object", "description": "the routing as checked, every default filled in"},
        }),
        "RoutingApplied": {"allOf": [_ref("Routing"), _object(["applied", "rerouted"], {
            "applied": {"type": "boolean", "description": "false when it was the routing in force already"},
            "rerouted": {"type": "integer", "description": "waiting leads routed again because their queue went"},
        })]},
        "RoutingHistory": _object(["versions"], {"versions": {"type": "array", "items": _object(
            ["version", "fingerprint", "source", "applied_at"], {
                "version": {"type": "string"}, "fingerprint": {"type": "string"}, "source": {"type": "string"},
                "applied_at": time, "by": _nullable({"type": "string"}),
            }), "description": "newest first"}}),
        "Fairness": _object(["queues"], {"queues": {"type": "array", "items": _ref("QueueFairness")}}),
        "QueueFairness": {
            **_object(["queue", "strategy", "window_s", "assignments", "reps", "spread", "gini"], {
                "queue": {"type": "string"},
                "strategy": {"type": "string"},
                "window_s": {"type": "integer", "minimum": 1},
                "assignments": {"type": "integer", "minimum": 0, "description": "assignments in the queue in the window"},
                "reps": {**counts, "description": "assignments per rep: every member now (0 when it got none) and "
                                                  "any rep that got the queue's leads in the window"},
                "spread": {"type": "integer", "minimum": 0, "description": "the most a rep got less the fewest"},
                "gini": {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                         "description": "0 = perfectly even; one rep with every lead among n gives (n - 1) / n"},
            }),
            "description": "How evenly one queue's leads went round its reps over the window.",
        },
        "Live": {
            **_object(["at", "assigned_total", "reps_total", "reps_by_status", "reps", "queues", "teams", "recent"], {
                "at": time,
                "assigned_total": {"type": "integer"},
                "reps_total": {"type": "integer"},
                "reps_by_status": by_status,
                "reps_on_shift": {"type": "integer", "description": "reps their schedule has on shift now"},
                "reps": {"type": "array", "items": _object(["id", "status", "load", "capacity", "utilization"], {
                    "id": {"type": "string"}, "status": {"enum": STATUSES}, "utilization": {"type": "number"},
                    "on_shift": {"type": "boolean", "description": "false outside the rep's schedule: no new leads"},
                    "breaches": {"type": "integer", "description": "first-contact SLA breaches since the workspace began"},
                })},
                "queues": {"type": "array", "items": _object(["name"], {
                    "name": {"type": "string"},
                    "offered": {"type": "integer", "description": "leads offered to a rep, awaiting an accept"},
                    "pooled": {"type": "integer", "description": "leads in the queue's claim pool"},
                    "breaches": {"type": "integer", "description": "first-contact SLA breaches since the workspace began"},
                })},
                "breaches_total": {"type": "integer", "description": "first-contact SLA breaches since the workspace began"},
                "teams": {"type": "array", "items": _object(["name", "reps", "load", "capacity_online", "utilization"], {
                    "name": {"type": "string"}, "reps": by_status, "load": by_status,
                    "capacity_online": {"type": "integer"}, "utilization": _nullable({"type": "number"}),
                })},
                "fairness": {"type": "array", "items": _ref("QueueFairness"),
                             "description": "per queue over DISPATCHER_FAIRNESS_WINDOW_S, sampled every "
                                            "DISPATCHER_FAIRNESS_SAMPLE_S; empty until the first sample"},
                "recent": {"type": "array", "items": _object(["lead_id", "rep_id", "queue", "assigned_at"], {
                    "lead_id": {"type": "string"}, "rep_id": {"type": "string"}, "queue": {"type": "string"},
                    "assigned_at": time, "latency_ms": {"type": "integer"},
                })},
            }),
            "description": "The live picture the supervisor page shows, sampled when asked, at most once a second.",
        },
    }


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


def _operation(summary: str, answer: dict[str, Any], errors: str, *, body: str | None = None,
               body_required: bool = True, security: list[dict[str, list[str]]] | None = None) -> dict[str, Any]:
    """One call: its answer (status: response) and the refusals it can give, by status."""
    operation: dict[str, Any] = {"summary": summary, "responses": {
        **answer, **{status: {"$ref": f"#/components/responses/{status}"} for status in errors.split()}}}
    if body is not None:
        operation["requestBody"] = {"required": body_required, "content": {JSON: {"schema": _ref(body)}}}
    if security is not None:
        operation["security"] = security
    return operation


def _id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": f"the {what}'s id",
            "schema": {"type": "string", "pattern": ID_PATTERN.removesuffix("\\Z") + "$"}}


OPEN: list[dict[str, list[str]]] = []
# A browser cannot set a header when it opens a page or an event stream.
PAGE_TOKEN = [{"bearer": []}, {"query_token": []}]
LEAD_ID, REP_ID = _id("lead_id", "lead"), _id("rep_id", "rep")
LEAD_STATE = {"200": _json("LeadState", "the lead after the step")}
REP = {"200": _json("Rep", "the rep after the step")}

PATHS: dict[str, dict[str, Any]] = {
    "/v1/health": {"get": _operation(
        "Whether redis answers and, on a worker, it consumes the leads topic (on an api process: its producer is up)",
        {"200": _json("Health", "healthy"), "503": _json("Health", "not yet, or no longer: `error` says why")},
        "", security=OPEN)},
    "/metrics": {"get": _operation(
        "Prometheus metrics", {"200": {"description": "the text exposition format",
                                       "content": {"text/plain": {"schema": {"type": "string"}}}}},
        "", security=OPEN)},
    "/openapi.json": {"get": _operation(
        "This document", {"200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": {"type": "object"}}}}},
        "", security=OPEN)},
    "/v1/leads": {"post": _operation(
        "Accept a lead; it is routed from the leads topic like any other producer's",
        {"202": _json("Accepted", "accepted (again, when `duplicate`): the id is the idempotency key")},
        "400 401 403 413 503", body="Lead")},
    "/v1/leads/{lead_id}": {"parameters": [LEAD_ID], "get": _operation(
        "The lead's state, the reason for its rep, and its history",
        {"200": _json("LeadState", "the lead")}, "401 403 404 503")},
    "/v1/leads/{lead_id}/close": {"parameters": [LEAD_ID], "post": _operation(
        "Close a lead: its rep's capacity is free when the answer arrives",
        LEAD_STATE, "400 401 403 404 413 503", body="CloseRequest")},
    "/v1/leads/{lead_id}/accept": {"parameters": [LEAD_ID], "post": _operation(
        "Accept a lead offered to the rep: it becomes the rep's assignment (409 once the offer ran out or went elsewhere)",
        LEAD_STATE, "400 401 403 404 409 503")},
    "/v1/leads/{lead_id}/reject": {"parameters": [LEAD_ID], "post": _operation(
        "Turn down a lead offered to the rep: it is offered to someone else, never back to this rep",
        LEAD_STATE, "400 401 403 404 409 503")},
    "/v1/leads/{lead_id}/reassign": {"parameters": [LEAD_ID], "post": _operation(
        "Move a lead to a rep, or without rep_id (or body) route it again to anyone but its rep",
        LEAD_STATE, "400 401 403 404 409 413 503", body="ReassignRequest", body_required=False)},
    "/v1/leads/{lead_id}/release": {"parameters": [LEAD_ID], "post": _operation(
        "Hand an assigned lead back: routed again in its queue, never to a rep that let it go",
        LEAD_STATE, "400 401 403 404 409 413 503", body="ReleaseRequest")},
    "/v1/leads/{lead_id}/contact": {"parameters": [LEAD_ID], "post": _operation(
        "Record the first contact of an assigned lead, which stops its queue's SLA clock",
        LEAD_STATE, "400 401 403 404 409 503")},
    "/v1/pool": {"get": {**_operation(
        "Pooled leads, best first per queue (at most 100): a rep token sees what its rep may claim",
        {"200": {"description": "the pooled leads", "content": {JSON: {"schema": _object(["leads", "limit"], {
            "leads": {"type": "array", "items": _ref("LeadState")}, "limit": {"type": "integer"}})}}}},
        "401 403 404 503"),
        "parameters": [{"name": "queue", "in": "query", "required": False,
                        "description": "only this queue's pool (404 for a queue the routing in force lacks)",
                        "schema": {"type": "string"}}]}},
    "/v1/pool/{lead_id}/claim": {"parameters": [LEAD_ID], "post": _operation(
        "Claim a pooled lead for a rep: exactly one of any number of claims wins; the others get 409",
        LEAD_STATE, "400 401 403 404 409 413 422 503", body="ClaimRequest")},
    "/v1/reps": {"get": _operation("Every rep", {"200": _json("Reps", "the reps, by id")}, "401 403 503")},
    "/v1/reps/{rep_id}": {
        "parameters": [REP_ID],
        "get": _operation("One rep", {"200": _json("Rep", "the rep")}, "401 403 404 503"),
        "put": _operation("Create or replace a rep's profile", REP, "400 401 403 409 413 503", body="RepProfile"),
    },
    "/v1/reps/{rep_id}/leads": {"parameters": [REP_ID], "get": _operation(
        "The rep's open leads: what a rep's app polls", {"200": _json("RepLeads", "open lead ids")}, "401 403 404 503")},
    "/v1/reps/{rep_id}/history": {"parameters": [REP_ID], "get": {**_operation(
        "The rep's assignments and lead events, newest first, a page at a time (kept "
        "DISPATCHER_REP_HISTORY_RETENTION_S)", {"200": _json("RepHistory", "a page of events")}, "400 401 403 404 503"),
        "parameters": [
            {"name": "limit", "in": "query", "required": False, "description": "events per page, 1..500 (default 50)",
             "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
            {"name": "before", "in": "query", "required": False,
             "description": "the `next_before` of the previous page: the events older than its last one",
             "schema": {"type": "string"}}]}},
    "/v1/reps/{rep_id}/events": {"parameters": [REP_ID], "get": {**_operation(
        "What reaches the rep as server-sent events, within milliseconds of the decision, from any worker: "
        "`event: assignment` (an assignment or a move to the rep; data as on the assignments topic, with "
        "event_id); `id:` is the event's id, and Last-Event-ID resumes after it; `: keep-alive` comments",
        {"200": {"description": "the rep's events, for as long as the client listens",
                 "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
        "400 401 403 404", security=PAGE_TOKEN),
        "parameters": [{"name": "Last-Event-ID", "in": "header", "required": False,
                        "description": "the id of the last event received: the stream resumes after it",
                        "schema": {"type": "string"}}]}},
    "/v1/reps/{rep_id}/presence": {"parameters": [REP_ID], "post": _operation(
        "Set a rep's presence; every call is also a heartbeat", REP, "400 401 403 404 413 503",
        body="PresenceChange")},
    "/": {"get": _operation(
        "The live supervisor page", {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        "401 403", security=PAGE_TOKEN)},
    "/v1/routing": {
        "get": _operation("The routing in force: every worker decides with it",
                          {"200": _json("Routing", "the routing in force")}, "401 403 503"),
        "put": {**_operation(
            "Replace the routing: checked as `dispatcher routing check` checks a file, then applied in one "
            "atomic step every worker takes up at its next lead; 409 (with `reasons`) when it cannot be "
            "applied safely", {"200": _json("RoutingApplied", "the routing in force now")},
            "400 401 403 409 413 422 503"),
            # Any body is read as YAML, of which JSON is a part; the document names JSON, whose
            # shape a schema can state (a mapping: channels, queues, rules, default_queue).
            "requestBody": {"required": True, "description": "the routing, as JSON or as YAML text",
                            "content": {JSON: {"schema": {"type": "object"}}}}},
    },
    "/v1/routing/history": {"get": _operation(
        "The routings applied, newest first", {"200": _json("RoutingHistory", "versions, with who and when")},
        "401 403 503")},
    "/v1/stats/fairness": {"get": {**_operation(
        "How evenly each queue's leads went round its reps: assignments per rep, spread and Gini over a window",
        {"200": _json("Fairness", "per queue of the routing in force")}, "400 401 403 503"),
        "parameters": [{"name": "window_s", "in": "query", "required": False,
                        "description": "the window in whole seconds (default 3600, cut to the retention); above "
                                       "DISPATCHER_FAIRNESS_RETENTION_S (default 86400) it is refused with 400",
                        "schema": {"type": "integer", "minimum": 1}}]}},
    "/v1/live": {"get": _operation(
        "The live picture as JSON", {"200": _json("Live", "reps, queues, teams, recent assignments")}, "401 403 503")},
    "/v1/live/stream": {"get": _operation(
        "The live picture as server-sent events, one a second, for as long as the client listens",
        {"200": {"description": "`data: <the live picture as JSON>` events",
                 "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
        "401 403", security=PAGE_TOKEN)},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lead dispatcher",
            "version": version("lead-dispatcher"),
            "description": "Routes leads to reps in real time. Errors are {\"error\": \"<what is wrong, in words>\"}.",
        },
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": _schemas(),
            "responses": {status: _json("Error", meaning) for status, meaning in ERRORS.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "DISPATCHER_API_TOKENS or the tokens file; the role decides the calls"},
                "query_token": {"type": "apiKey", "in": "query", "name": "access_token",
                                "description": "the same token, taken only by the page and the event stream"},
            },
        },
    }
