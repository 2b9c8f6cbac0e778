"""Stream processors and the worker's background work: `assign_leads` turns each lead on the
`leads` topic into one atomic decision in Redis and one assignment event; `relay_outbox` sends
the events every other step wrote into the outbox; the timers keep the routing in step with the
file and with the other workers, move what fell due (leads, rep shifts), forget closed leads and
logged assignments after their retention, and sample the fairness figures (the live picture is
sampled when asked: dispatcher/live.py).
Imported by workers only: an api process registers none of it (dispatcher/app.py).

Delivery is at-least-once: a lead's offset is acknowledged (and so committed) only after its
decision is made and its event (or its dead letter) delivered. A redelivery after a crash carries
the same topic/partition/offset, which the decision script recognises as a replay: it changes
nothing, and the event goes out again, with the same event_id.

One record never stops a partition: whatever goes wrong with one lead (its value, its decision)
sends that lead to `leads-dlq` with the reason, and the rest of its batch is decided.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from faust.types import EventT

from dispatcher import metrics
from dispatcher import live
from dispatcher.app import app, declare_topics, leads_topic, settings, store
from dispatcher.background import survives
from dispatcher.batches import NaturalBatches
from dispatcher.events import (
    Delivery,
    announce_decisions,
    announce_lead_events,
    count_assignments,
    produce,
    publish_dead_letter,
)
from dispatcher.models import BadInput, routable_lead
from dispatcher.outbox import OutboxRelay
from dispatcher.webhooks import WebhookRelay
from dispatcher.routing import API_SOURCE, RoutingError, load_routing, read_routing_file
from dispatcher.state.layout import encoding_advice, is_unavailable
from dispatcher.state.results import Decision, RoutingRefused

log = logging.getLogger(__name__)
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
received_from_kafka = metrics.leads_received_total.labels("kafka")
# How many closed leads one call forgets: bounds how long it holds Redis.
EXPIRE_BATCH = 1000
# How many due leads one step moves: bounds how long it holds Redis.
DUE_BATCH = 200


@app.agent(leads_topic)
async def assign_leads(stream):  # type: ignore[no-untyped-def]
    batches = NaturalBatches(stream, settings.batch_max, decide, linger_s=settings.batch_linger_ms / 1000)
    async for event in stream.noack().events():
        await batches.add(event)


async def decide(events: Sequence[EventT]) -> list[Delivery]:
    """One batch, in four steps: validate each record (refusals go to the DLQ), route and decide
    the valid leads (the routing in force picks each lead's queue and rule, then one pipelined round
    trip of decision scripts), publish an event for each assignment made or replayed. Returns the
    delivery of every record it wrote."""
    received_from_kafka.inc(len(events))
    routable, deliveries = await _validate(events)
    if not routable:
        return deliveries
    started = time.perf_counter()
    decisions = await _decide_until_redis_answers([(lead, _source(event)) for lead, event in routable])
    per_decision_ms = (time.perf_counter() - started) * 1000 / len(decisions)
    return deliveries + await _publish(routable, decisions, per_decision_ms)


async def _validate(events: Sequence[EventT]) -> tuple[list[tuple[dict[str, Any], EventT]], list[Delivery]]:
    """The leads that can be routed, each with its record, and the dead letters of the rest."""
    deliveries, routable, unrouted = [], [], []
    for event in events:
        try:
            routable.append((_usable(event), event))
        except BadInput as error:
            if error.kind == "unrouted_channel":
                unrouted.append(event)
            else:
                deliveries.append(await _dead_letter(event, error))
    if unrouted:
        # A channel this worker does not route may be one that another worker's routing change
        # has just added: take up the routing in force before refusing the lead.
        await _adopt_routing_in_force()
        for event in unrouted:
            try:
                routable.append((_usable(event), event))
            except BadInput as error:
                deliveries.append(await _dead_letter(event, error))
    return routable, deliveries


async def _publish(routable: Sequence[tuple[dict[str, Any], EventT]], decisions: Sequence[Decision],
                   per_decision_ms: float) -> list[Delivery]:
    """Dead letters for the leads a step refused, an event for every assignment made or replayed,
    and the decision metrics."""
    decided_at_s = time.time()
    deliveries = []
    outcomes: Counter[tuple[str, str, str]] = Counter()
    announced, lead_events = [], []
    for (_, event), decision in zip(routable, decisions, strict=True):
        if decision.kind == "failed":
            log.error("lead %s could not be decided: %s", decision.lead_id, decision.error)
            deliveries.append(await _dead_letter(event, BadInput(f"the lead could not be decided: {decision.error}",
                                                                 "undecidable")))
            continue
        metrics.decision_duration_ms.observe(per_decision_ms)
        strategy = decision.assignment.strategy if decision.assignment else ""
        outcomes[decision.queue, strategy, decision.status if decision.kind == "new" else decision.kind] += 1
        if decision.assignment and decision.kind != "duplicate":
            announced.append(decision.assignment)
        lead_events.extend(decision.lead_events)
        if decision.assignment and decision.kind == "new":
            metrics.lead_to_assignment_ms.observe(max(0.0, decided_at_s - event.message.timestamp) * 1000)
    # Counted per batch: a labelled child looked up per lead showed in profiles.
    for labels, count in outcomes.items():
        metrics.leads_decided_total.labels(*labels).inc(count)
    return deliveries + await announce_decisions(announced) + await announce_lead_events(lead_events)


def _source(event: EventT) -> str:
    message = event.message
    return f"{message.topic}/{message.partition}@{message.offset}"


def _usable(event: EventT) -> dict[str, Any]:
    """The lead a record holds, or BadInput saying why it cannot be one. Anything that goes wrong
    reading one record is that record's problem alone."""
    if event.value is None:
        raise BadInput("record has no value", "empty")
    try:
        return routable_lead(event.value, store.routing, max_bytes=settings.max_body_bytes)
    except BadInput:
        raise
    except Exception as exc:  # noqa: BLE001 - one record must never stop its partition
        log.exception("reading the record at %s failed", _source(event))
        raise BadInput(f"the record could not be read: {exc}", "undecidable") from None


async def _dead_letter(event: EventT, error: BadInput) -> Delivery:
    headers = event.message.headers or ()
    # faust hands headers over as a list of pairs or as a mapping, depending on where they came from.
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    return await publish_dead_letter(event.value, error, _source(event), key=event.message.key, headers=pairs)


async def _adopt_routing_in_force() -> None:
    try:
        await store.adopt_routing()
    except Exception as exc:  # noqa: BLE001 - the records are then judged by the routing in hand
        log.warning("could not check the routing in force: %s", exc)


async def _decide_until_redis_answers(deliveries: list) -> list[Decision]:
    """Redis being away or refusing writes (READONLY in a failover, OOM, LOADING) must not drop
    or skip leads: the batch is retried (each decision is idempotent by lead id) and the offsets
    wait, so a long outage backs up in Kafka, not here."""
    attempt = 0
    while True:
        try:
            return await store.assign_many(deliveries)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            metrics.redis_unavailable_total.labels("decide").inc()
            delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
            log.warning("redis unavailable (%s); retrying %d leads in %.2f s", exc, len(deliveries), delay)
            attempt += 1
            await asyncio.sleep(delay)


app.task(declare_topics)


@app.task
async def relay_outbox() -> None:
    consumer = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    relay = OutboxRelay(store.client, store.keys.outbox, consumer, produce, settings.topic,
                        claim_idle_ms=int(settings.outbox_claim_idle_s * 1000))
    await relay.run()


@app.task
async def relay_webhooks() -> None:
    if not settings.webhook_url:
        return
    consumer = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    relay = WebhookRelay(store.client, store.keys.notifications, store.keys.webhook_dead_letters, consumer,
                         settings.webhook_url, settings.webhook_secret, attempts=settings.webhook_attempts,
                         backoff_s=settings.webhook_backoff_s, timeout_s=settings.webhook_timeout_s)
    try:
        await relay.run()
    finally:
        await relay.close()


@app.task
async def advise_on_redis_encodings() -> None:
    """Said once at start: a Redis set up as its defaults are costs each decision a scan per lookup."""
    try:
        advice = await encoding_advice(store.client)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        return
    for words in advice:
        log.warning("%s", words)


# The routing file's text as last seen by this worker: an edit is what makes it apply again.
_routing_text: str | None = None


@app.task
async def seed_routing() -> None:
    """The routing file (or the built-in routing, when there is no file and nothing is in force
    yet) becomes the routing in force for every worker, unless the routing in force was put over
    HTTP. A worker started without a file takes up the routing the others use."""
    global _routing_text
    while True:
        try:
            in_force = await store.routing_in_force()
            if settings.routing is None:
                if not await store.adopt_routing() and store.routing_version == "0":
                    await _apply(store.routing, "built-in default")
            elif in_force is not None and in_force["source"] == API_SOURCE:
                # A routing put over HTTP stays until it is put again or the file is edited: a
                # restart must not undo it with a file nobody changed.
                _routing_text = settings.routing.read_text()
                await store.adopt_routing()
                log.info("keeping routing version %s, put over HTTP; %s applies once edited",
                         in_force["version"], settings.routing)
            else:
                await _apply(load_routing(settings.routing), f"file {settings.routing}")
            return
        except RoutingRefused as exc:
            log.error("routing file %s cannot be applied, keeping the routing in force: %s", settings.routing, exc)
            await store.adopt_routing()
            return
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            metrics.redis_unavailable_total.labels("seed_routing").inc()
            await asyncio.sleep(1.0)


async def _apply(routing: Any, why: str) -> None:
    change = await store.apply_routing(routing, by=f"{settings.worker_id or socket.gethostname()} ({why})")
    if change.applied:
        count_assignments(change.assignments)
        metrics.routing_reloads_total.labels("applied").inc()
        log.info("routing version %s applied from %s: %d queues, %d waiting leads routed again",
                 change.version, why, len(routing.queues), change.rerouted)


@app.timer(interval=settings.routing_poll_s)
@survives("reload_routing")
async def reload_routing() -> None:
    """Rules change by editing the file, not the code. A file that fails the check, is empty, or is
    still being written is refused in words in the log and the metrics, and the routing in force
    stays as it was. Another worker's change is taken up here too, within one poll."""
    global _routing_text
    await store.adopt_routing()
    if store.routing_version == "0":
        # Nothing in force (the seed failed, or Redis lost it): the routing in hand becomes it.
        await _apply(store.routing, "the routing in hand, as none was in force")
    if settings.routing is None:
        return
    try:
        text = await read_routing_file(settings.routing, last_seen=_routing_text)
    except RoutingError as exc:
        if str(exc) != _routing_text:
            metrics.routing_reloads_total.labels("refused").inc()
            log.error("%s; keeping the routing in force", exc)
        _routing_text = str(exc)
        return
    if text is None:
        metrics.routing_reloads_total.labels("unsettled").inc()
        return
    if text == _routing_text:
        return
    try:
        await _apply(load_routing(settings.routing, text=text), f"file {settings.routing}")
    except (RoutingError, RoutingRefused) as exc:
        metrics.routing_reloads_total.labels("refused").inc()
        log.error("routing file refused, keeping the routing in force: %s", exc)
    # Seen only once applied or refused for what it says: a run that failed on the way (Redis
    # refusing writes, the routing moving under every attempt) leaves the edit to the next poll.
    _routing_text = text


@app.timer(interval=settings.due_poll_s)
@survives("move_due_leads")
async def move_due_leads() -> None:
    """Sticky holds that ran out, overflows and pool times that fell due, and missed first contacts,
    moved on every worker: each step is atomic and takes what it moves out of `due`, so workers
    running it at once move each lead once (and count each breach once)."""
    while True:
        moved = await store.move_due(DUE_BATCH)
        count_assignments(moved.assignments)
        for queue, rep in moved.breaches:
            metrics.sla_breaches_total.labels(queue, rep).inc()
        metrics.leads_pooled_total.inc(moved.pooled)
        metrics.offer_answers_total.labels("ran_out").inc(moved.offers_returned)
        if moved.breaches:
            log.info("%d first-contact SLAs breached: %s", len(moved.breaches),
                     ", ".join(f"{rep} in {queue}" for queue, rep in moved.breaches))
        if moved.holds_ended or moved.overflowed:
            log.info("%d sticky holds ran out, %d leads overflowed, %d assigned", moved.holds_ended, moved.overflowed,
                     len(moved.assignments))
        if not moved.left:
            return


@app.timer(interval=settings.due_poll_s)
@survives("apply_shifts")
async def apply_shifts() -> None:
    """Reps whose schedule starts or ends their shift by now (working hours, absences): the state is
    computed here, applied by one compare-and-set step per rep, so workers running this at once
    apply each boundary once. Coming on shift drains waiting leads to the rep at once."""
    while True:
        applied = await store.apply_shifts(DUE_BATCH)
        count_assignments(applied.assignments)
        if applied.changed:
            log.info("shifts changed: %s", ", ".join(f"{rep} {'on' if on else 'off'}" for rep, on in applied.changed))
        if not applied.more:
            return


app.timer(interval=settings.fairness_sample_s)(live.sample_fairness)


@app.timer(interval=60.0)
@survives("expire_closed_leads")
async def expire_closed_leads() -> None:
    """Closed leads leave Redis after the retention, a bounded batch at a time."""
    while (forgotten := await store.expire_closed(settings.closed_lead_retention_s, EXPIRE_BATCH)):
        metrics.closed_leads_expired_total.inc(forgotten)
        if forgotten < EXPIRE_BATCH:
            return


@app.timer(interval=60.0)
@survives("forget_assignments")
async def forget_assignments() -> None:
    """The assignment log (fairness) keeps DISPATCHER_FAIRNESS_RETENTION_S and no more: one command
    drops what is older, however much that is."""
    metrics.assignments_forgotten_total.inc(await store.forget_assignments(settings.fairness_retention_s))


@app.timer(interval=60.0)
@survives("forget_rep_history")
async def forget_rep_history() -> None:
    """The rep log (GET /v1/reps/{id}/history) keeps DISPATCHER_REP_HISTORY_RETENTION_S, a bounded
    number of reps at a time."""
    while True:
        visited, dropped = await store.forget_rep_history(settings.rep_history_retention_s, EXPIRE_BATCH)
        metrics.rep_history_forgotten_total.inc(dropped)
        if visited < EXPIRE_BATCH:
            return
