"""The HTTP API (README, "HTTP API in brief"): leads in, reps and presence, closes and moves, health, metrics.

Leads are accepted here and routed by the `assign_leads` agent through the `leads` topic, so HTTP
and Kafka producers get the same path. Closes, presence and profile changes run their Lua step
here and answer with the state after it: capacity freed by a close is free when the 200 arrives.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from dispatcher import fairness, live, metrics, openapi
from dispatcher.app import app, hub, settings, store
from dispatcher.events import count_assignments, publish_lead
from dispatcher.http import rejected
from dispatcher.notify import stream_id
from dispatcher.models import (
    BadInput,
    ClaimRequest,
    CloseRequest,
    PresenceChange,
    ReassignRequest,
    ReleaseRequest,
    check_id,
    decode,
    routable_lead,
    usable_profile,
)
from dispatcher.routing import API_SOURCE, RoutingError, parse_routing, yaml_says_nothing
from dispatcher.state.results import Outcome, RoutingRefused, iso_ms
from strategies import policy

log = logging.getLogger(__name__)

PRODUCE_TIMEOUT_S = 10.0
PAGE = Path(__file__).parent / "static" / "index.html"
OUTCOME_STATUS = {"ok": 200, "not_found": 404, "forbidden": 403, "conflict": 409, "unprocessable": 422}
# The most pooled leads one GET /v1/pool answers with.
POOL_PAGE = 100


def json_response(body: Any, status: int = 200) -> Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def refusal(exc: BadInput, endpoint: str) -> Response:
    return rejected(413 if exc.kind == "too_large" else 400, str(exc), endpoint)


def lead_view(record: dict[str, Any]) -> dict[str, Any]:
    status, lead = record["status"], record.get("lead") or {}
    rep_id = record.get("rep_id") or None
    if rep_id and record.get("facts"):
        reason = policy.reason(record["queue"], record["strategy"], record["facts"])
        if status == "offered":
            reason = f"offered to {rep_id} until {iso_ms(record['offer_until'])}: {reason}"
    elif status == "queued" and record.get("held_for"):
        reason = (f"held in queue {record['queue']} for {record['held_for']}, its customer's last rep "
                  f"({record.get('sticky_key')}), until {iso_ms(record['held_until'])}; then the queue's "
                  f"strategy ({record['strategy']}) decides")
    elif status == "queued":
        reason = f"waiting in queue {record['queue']}: no eligible rep has room yet"
    elif status == "pooled":
        reason = f"in the claim pool of queue {record['queue']}: a rep of the queue may claim it"
    elif status == "pending":
        reason = "accepted, not yet routed"
    else:
        reason = f"closed before any rep took it ({record.get('outcome')})"
    history = [
        {**entry, "at": iso_ms(entry["at"]), **({"until": iso_ms(entry["until"])} if "until" in entry else {})}
        for entry in sorted(record.get("history") or [], key=lambda e: e["at"])
    ]
    view = {
        "id": record["id"],
        "status": status,
        "rep_id": rep_id,
        "queue": record.get("queue"),
        "strategy": record.get("strategy"),
        "reason": reason,
        "channel": lead.get("channel"),
        "priority": lead.get("priority"),
        "accepted_at": iso_ms(record["accepted_at"]),
        "history": history,
    }
    if record.get("outcome"):
        view["outcome"] = record["outcome"]
    return view


def refused_or_counted(outcome: Outcome, endpoint: str) -> Response | None:
    """The refusal in words when the step was refused; otherwise None, with every lead the step
    assigned counted. Their events need nothing from here: the step wrote them to the outbox."""
    if not outcome.ok:
        return rejected(OUTCOME_STATUS[outcome.code], outcome.detail, endpoint)
    count_assignments(outcome.assignments)
    return None


@app.page("/v1/health")
class Health(View):
    """A worker is ok once redis answers, it consumes the leads topic and a routing is in force. An
    api process consumes nothing: it is ok once redis answers and its producer is up (leads it takes
    then reach the topic, decided as soon as a worker consumes it); it validates with the routing
    in force, or with its own file or the built-in routing while none is."""

    async def get(self, request: Request) -> Response:
        try:
            redis_ok = bool(await store.client.ping())
        except Exception as exc:  # noqa: BLE001 - any failure means "not healthy", said in words
            return json_response({"status": "unavailable", "error": f"redis does not answer: {exc}"}, 503)
        if app.producer_only:
            if not app.producer.started or app.producer.should_stop:
                return json_response({"status": "starting", "error": "the producer to the broker is not up"}, 503)
        elif not app.consuming:
            return json_response({"status": "starting", "error": "not yet consuming the leads topic"}, 503)
        elif store.routing_version == "0":
            return json_response({"status": "starting", "error": "the routing is not yet in force"}, 503)
        return json_response(
            {"status": "ok", "role": settings.process_role, "redis": redis_ok, "worker_id": settings.worker_id,
             "routing": store.routing.source, "routing_version": store.routing_version}
        )


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        await live.refresh_gauges()
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/v1/leads")
class Leads(View):
    async def post(self, request: Request) -> Response:
        raw = await request.read()
        try:
            lead = routable_lead(raw, store.routing, max_bytes=settings.max_body_bytes)
        except BadInput as exc:
            return refusal(exc, "leads")
        known = await store.accept(lead)
        if known not in ("new", "pending"):
            return json_response({"id": lead["id"], "status": "accepted", "duplicate": True}, 202)
        try:
            # The send is bounded too, not only its delivery: with the broker stuck, the producer's
            # send itself waits (for metadata, for room in a full batch) as long as its request
            # timeout, 20 minutes.
            await asyncio.wait_for(publish_lead(lead), PRODUCE_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the client must learn the lead was not taken
            why = f"not within {PRODUCE_TIMEOUT_S:.0f} s" if isinstance(exc, TimeoutError) else repr(exc)
            # Logged too: a client may not say why it saw intake fail, and a timeout cancels the
            # delivery before the producer's own failure log could see it.
            log.warning("lead %s answered 503, the broker did not take it: %s", lead["id"], why)
            return rejected(503, f"the broker did not take the lead ({why}); send it again", "leads")
        metrics.leads_received_total.labels("http").inc()
        return json_response({"id": lead["id"], "status": "accepted", "duplicate": known == "pending"}, 202)


@app.page("/v1/leads/{lead_id}")
class Lead(View):
    async def get(self, request: Request, lead_id: str) -> Response:
        record = await store.lead(lead_id)
        if record is None:
            return rejected(404, f"unknown lead {lead_id}", "lead")
        return json_response(lead_view(record))


async def lead_step(request: Request, lead_id: str, endpoint: str,
                    step: Callable[[Any], Awaitable[Outcome | Response]],
                    shape: type[Any] | None = None, empty: Any = None, counted: Counter | None = None) -> Response:
    """A step on one lead, as every lead endpoint runs it: the lead id and the body (of `shape`;
    none read without one; `empty` stands for a blank body where one may be left out) refused in
    words when bad, then `step` on the decoded body, then the step's refusal or the lead as it is
    after the step, with `counted` counted once the step went through. `step` may answer with a
    Response of its own for a refusal only it can make."""
    raw = await request.read() if shape else b""
    try:
        check_id(lead_id, "lead")
        blank = empty is not None and not raw.strip()
        body = empty if shape is None or blank else decode(raw, shape, max_bytes=settings.max_body_bytes)
    except BadInput as exc:
        return refusal(exc, endpoint)
    outcome = await step(body)
    if not isinstance(outcome, Outcome):
        return outcome
    if refused := refused_or_counted(outcome, endpoint):
        return refused
    if counted is not None:
        counted.inc()
    return json_response(lead_view(await store.lead(lead_id)))


@app.page("/v1/leads/{lead_id}/close")
class LeadClose(View):
    async def post(self, request: Request, lead_id: str) -> Response:
        return await lead_step(request, lead_id, "close", lambda close: store.close(
            lead_id, close.outcome, actor=request["actor"], only_rep=request["rep_id"]), CloseRequest)


class _OfferAnswer(View):
    """An answer to an offer, by the rep it is offered to (a rep token: checked in the step itself,
    atomically) or by a supervisor for that rep. No body."""

    answer = ""

    async def post(self, request: Request, lead_id: str) -> Response:
        step = store.accept_offer if self.answer == "accept" else store.reject_offer
        return await lead_step(request, lead_id, self.answer,
                               lambda _: step(lead_id, request["rep_id"], actor=request["actor"]),
                               counted=metrics.offer_answers_total.labels(f"{self.answer}ed"))


@app.page("/v1/leads/{lead_id}/accept")
class LeadAccept(_OfferAnswer):
    answer = "accept"


@app.page("/v1/leads/{lead_id}/reject")
class LeadReject(_OfferAnswer):
    answer = "reject"


@app.page("/v1/leads/{lead_id}/reassign")
class LeadReassign(View):
    async def post(self, request: Request, lead_id: str) -> Response:
        return await lead_step(request, lead_id, "reassign", lambda move: store.reassign(
            lead_id, move.rep_id, actor=request["actor"]), ReassignRequest, empty=ReassignRequest())


@app.page("/v1/leads/{lead_id}/release")
class LeadRelease(View):
    """The rep holding a lead hands it back: it goes to another rep of its queue, never back."""

    async def post(self, request: Request, lead_id: str) -> Response:
        return await lead_step(request, lead_id, "release", lambda release: store.release(
            lead_id, release.reason, actor=request["actor"], only_rep=request["rep_id"]), ReleaseRequest)


@app.page("/v1/leads/{lead_id}/contact")
class LeadContact(View):
    """The first contact of an assigned lead: stops its queue's SLA clock."""

    async def post(self, request: Request, lead_id: str) -> Response:
        return await lead_step(request, lead_id, "contact", lambda _: store.contact(
            lead_id, actor=request["actor"], only_rep=request["rep_id"]))


@app.page("/v1/pool")
class Pool(View):
    """Pooled leads, best first per queue: for a rep token, those its rep may claim; for others,
    every queue's, or one queue's with ?queue=."""

    async def get(self, request: Request) -> Response:
        queue = request.query.get("queue")
        if queue is not None and queue not in store.routing.by_name:
            return rejected(404, f"unknown queue {queue}", "pool")
        queues = [queue] if queue else [q.name for q in store.routing.queues]
        records = await store.pool(queues, request["rep_id"], POOL_PAGE)
        return json_response({"leads": [lead_view(record) for record in records], "limit": POOL_PAGE})


@app.page("/v1/pool/{lead_id}/claim")
class PoolClaim(View):
    async def post(self, request: Request, lead_id: str) -> Response:
        async def claim_for(claim: ClaimRequest) -> Outcome | Response:
            if request["rep_id"] is not None and claim.rep_id != request["rep_id"]:
                return rejected(403, f"this token is bound to rep {request['rep_id']} and may not claim for rep "
                                     f"{claim.rep_id}", "claim")
            return await store.claim(lead_id, claim.rep_id, actor=request["actor"])

        return await lead_step(request, lead_id, "claim", claim_for, ClaimRequest, counted=metrics.pool_claims_total)


@app.page("/v1/reps")
class Reps(View):
    async def get(self, request: Request) -> Response:
        return json_response({"reps": await store.reps()})


@app.page("/v1/reps/{rep_id}")
class Rep(View):
    async def get(self, request: Request, rep_id: str) -> Response:
        found = await store.reps([rep_id])
        if not found:
            return rejected(404, f"unknown rep {rep_id}", "rep")
        return json_response(found[0])

    async def put(self, request: Request, rep_id: str) -> Response:
        try:
            check_id(rep_id, "rep")
            profile = usable_profile(await request.read(), store.routing, max_bytes=settings.max_body_bytes)
        except BadInput as exc:
            return refusal(exc, "rep")
        outcome = await store.upsert_rep(rep_id, profile, actor=request["actor"])
        if refused := refused_or_counted(outcome, "rep"):
            return refused
        (rep,) = await store.reps([rep_id])
        return json_response(rep)


@app.page("/v1/reps/{rep_id}/leads")
class RepLeads(View):
    """The rep's open leads: what a rep's app polls to know what to work on."""

    async def get(self, request: Request, rep_id: str) -> Response:
        leads = await store.open_leads_of(rep_id)
        if leads is None:
            return rejected(404, f"unknown rep {rep_id}", "rep_leads")
        return json_response({"rep_id": rep_id, "leads": leads})


HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX = 50, 500
HISTORY_CURSOR = re.compile(r"\d{16}\|[A-Za-z0-9._:#-]{1,200}")
LAST_EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
KEEP_ALIVE_S = 15.0


def history_query(query: Any) -> tuple[int, str | None]:
    """`limit` (1..500, default 50) and the `before` cursor a previous page gave, or BadInput."""
    raw = query.get("limit", str(HISTORY_LIMIT_DEFAULT))
    if not raw.isdigit() or not 1 <= int(raw) <= HISTORY_LIMIT_MAX:
        raise BadInput(f"limit must be a whole number from 1 to {HISTORY_LIMIT_MAX}, not {raw!r}")
    before = query.get("before")
    if before is not None and not HISTORY_CURSOR.fullmatch(before):
        raise BadInput("before must be the `next_before` a previous page of this history gave")
    return int(raw), before


@app.page("/v1/reps/{rep_id}/history")
class RepHistory(View):
    """The rep's assignments and lead events, newest first, a page at a time."""

    async def get(self, request: Request, rep_id: str) -> Response:
        try:
            limit, before = history_query(request.query)
        except BadInput as exc:
            return refusal(exc, "rep_history")
        found = await store.rep_history(rep_id, limit, before)
        if found is None:
            return rejected(404, f"unknown rep {rep_id}", "rep_history")
        events, next_before = found
        return json_response({"rep_id": rep_id, "events": events, "next_before": next_before})


@app.task
async def read_notifications() -> None:
    """The one reader of the notifications stream for this process's rep event streams (below),
    wherever the API is served: a worker or an api process."""
    await hub.run()


@app.on_before_shutdown.connect
async def end_event_streams(sender: object, **kwargs: object) -> None:
    hub.close()


def sse(entry_id: str, kind: str, event: dict[str, Any]) -> bytes:
    return f"id: {entry_id}\nevent: {kind}\n".encode() + b"data: " + orjson.dumps(event) + b"\n\n"


@app.page("/v1/reps/{rep_id}/events")
class RepEvents(View):
    """Server-sent events: what reaches the rep (an assignment, a move to it) as it is decided, on
    any worker; `Last-Event-ID` resumes from the notifications stream; a comment keeps it alive."""

    async def get(self, request: Request, rep_id: str) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        if last is not None and not LAST_EVENT_ID.fullmatch(last):
            return rejected(400, "Last-Event-ID must be the id of an event this stream sent", "rep_events")
        if not await store.reps([rep_id]):
            return rejected(404, f"unknown rep {rep_id}", "rep_events")
        # Subscribed before the resume is read, so nothing decided in between is missed; what both
        # hold is sent once.
        subscriber = await hub.subscribe(rep_id)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(b": connected\n\n")
            sent = stream_id(last) if last else (0, 0)
            for entry_id, kind, event in (await hub.since(rep_id, last) if last else []):
                await response.write(sse(entry_id, kind, event))
                sent = stream_id(entry_id)
            while True:
                try:
                    item = await asyncio.wait_for(subscriber.queue.get(), KEEP_ALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                if stream_id(item[0]) > sent:
                    await response.write(sse(*item))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.unsubscribe(subscriber)
        return response


@app.page("/v1/reps/{rep_id}/presence")
class RepPresence(View):
    async def post(self, request: Request, rep_id: str) -> Response:
        try:
            check_id(rep_id, "rep")
            change = decode(await request.read(), PresenceChange, max_bytes=settings.max_body_bytes)
        except BadInput as exc:
            return refusal(exc, "presence")
        outcome = await store.set_presence(rep_id, change.status, actor=request["actor"])
        if refused := refused_or_counted(outcome, "presence"):
            return refused
        (rep,) = await store.reps([rep_id])
        return json_response(rep)


@app.page("/v1/routing")
class RoutingInForce(View):
    """The routing every worker decides with now: its version, its text as written, its source."""

    async def get(self, request: Request) -> Response:
        routing = await store.routing_in_force()
        if routing is None:
            return rejected(503, "no routing is in force yet: the workers apply one as they start", "routing")
        return json_response(routing)

    async def put(self, request: Request) -> Response:
        """A new routing, YAML or JSON, checked as `dispatcher routing check` checks a file, then
        applied in one atomic step that every worker takes up at its next lead."""
        try:
            text = (await request.read()).decode()
        except UnicodeDecodeError:
            return rejected(400, "the routing must be UTF-8 text (YAML or JSON)", "routing")
        try:
            if yaml_says_nothing(text):
                raise RoutingError("the body is empty or holds only comments; a routing that replaces the "
                                   "routing in force must say what it routes")
            routing = parse_routing(text, API_SOURCE)
        except RoutingError as exc:
            metrics.routing_reloads_total.labels("refused").inc()
            return refused_with_reasons(422, exc.reasons)
        try:
            change = await store.apply_routing(routing, by=request["actor"])
        except RoutingRefused as exc:
            metrics.routing_reloads_total.labels("refused").inc()
            return refused_with_reasons(409, exc.reasons)
        if change.applied:
            metrics.routing_reloads_total.labels("applied").inc()
            count_assignments(change.assignments)
        return json_response({**await store.routing_in_force(), "applied": change.applied,
                              "rerouted": change.rerouted})


def refused_with_reasons(status: int, reasons: list[str]) -> Response:
    """A refusal that lists every reason on its own beside the one-line error."""
    metrics.http_rejected_total.labels("routing", str(status)).inc()
    return json_response({"error": "; ".join(reasons), "reasons": reasons}, status)


@app.page("/v1/routing/history")
class RoutingHistory(View):
    async def get(self, request: Request) -> Response:
        return json_response({"versions": await store.routing_history()})


@app.page("/v1/stats/fairness")
class Fairness(View):
    """How evenly each queue's leads went round its reps over `window_s` (the assignment log)."""

    async def get(self, request: Request) -> Response:
        try:
            window_s = fairness.window_s(request.query.get("window_s"), settings.fairness_retention_s,
                                         settings.fairness_window_s)
        except BadInput as exc:
            return refusal(exc, "fairness")
        return json_response({"queues": await store.fairness(window_s)})


@app.page("/")
class SupervisorPage(View):
    async def get(self, request: Request) -> Response:
        return web.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8")


@app.page("/v1/live")
class LivePicture(View):
    async def get(self, request: Request) -> Response:
        return json_response(await live.picture())


@app.page("/v1/live/stream")
class LiveStream(View):
    """Server-sent events: the live picture once a second, for as long as the page is open."""

    async def get(self, request: Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b"data: " + orjson.dumps(await live.picture()) + b"\n\n")
                await asyncio.sleep(live.SAMPLE_EVERY_S)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


OPENAPI_DOCUMENT = orjson.dumps(openapi.document())


@app.page("/openapi.json")
class OpenApi(View):
    async def get(self, request: Request) -> Response:
        return web.Response(body=OPENAPI_DOCUMENT, content_type="application/json")
