"""The live picture supervisors watch: one snapshot of reps, queues and the latest assignments,
sampled from Redis once a second by each worker (its timers, dispatcher/agents.py) and shared by
every page and the gauges. An api process runs no timers: it samples when a page asks, at most
once a second for all its pages, and exports no gauges (sampled only while someone watches, they
would go stale and mislead the alerts; the workers export them)."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from typing import Any

from dispatcher import metrics
from dispatcher.app import app, leads_topic, settings, store
from dispatcher.background import survives
from dispatcher.state.results import iso_ms

log = logging.getLogger(__name__)
REPS_SHOWN = 200
SAMPLE_EVERY_S = 1.0
STATUSES = ("online", "away", "offline")
NO_TEAM = "(none)"

latest: dict[str, Any] = {}
# Per queue over the fairness window, from the last fairness sample: the window reads a span of
# the assignment log, too much to read every second.
fairness: list[dict[str, Any]] = []
# When each was last sampled (time.monotonic()), and the one sampling on demand.
_sampled_at = _fairness_sampled_at = -math.inf
_sampling = asyncio.Lock()


def open_leads(value: int | dict[str, int]) -> int:
    return sum(value.values()) if isinstance(value, dict) else value


def utilization(rep: dict[str, Any]) -> float:
    capacity = open_leads(rep["capacity"])
    return open_leads(rep["load"]) / capacity if capacity else 0.0


def members_by_team(reps: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_team: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for rep in reps:
        for team in rep.get("teams") or [NO_TEAM]:
            by_team[team].append(rep)
    return by_team


def team_figures(reps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per team: reps and open leads by status, online capacity, and utilization = open leads of
    the online reps over their capacity. Away and offline reps keep their leads but have no
    capacity, so their leads are a figure of their own instead of pushing utilization past 100 %;
    a team with no capacity online has no utilization (None), not an infinite one."""
    figures = []
    for team, members in sorted(members_by_team(reps).items()):
        reps_by_status, load = collections.Counter(), collections.Counter()
        for rep in members:
            reps_by_status[rep["status"]] += 1
            load[rep["status"]] += open_leads(rep["load"])
        capacity = sum(open_leads(rep["capacity"]) for rep in members if rep["status"] == "online")
        figures.append({
            "name": team,
            "reps": {status: reps_by_status[status] for status in STATUSES},
            "load": {status: load[status] for status in STATUSES},
            "capacity_online": capacity,
            "utilization": round(load["online"] / capacity, 3) if capacity else None,
        })
    return figures


def has_room(rep: dict[str, Any]) -> bool:
    if isinstance(rep["capacity"], dict):
        return any(rep["load"].get(channel, 0) < cap for channel, cap in rep["capacity"].items())
    return rep["load"] < rep["capacity"]


async def snapshot(reps: list[dict[str, Any]]) -> dict[str, Any]:
    (queues, breaches_by_rep), recent = await store.queue_figures(), await store.recent_assignments()
    assigned, now_ms = await store.assigned_count(), await store.now_ms()
    for rep in reps:
        rep["utilization"] = round(utilization(rep), 3)
        rep["breaches"] = breaches_by_rep.get(rep["id"], 0)
    for queue in queues:
        online = [rep for rep in reps if rep["status"] == "online" and queue["name"] in rep["queues"]]
        queue["online"] = len(online)
        queue["ready"] = sum(has_room(rep) for rep in online)
    shown = sorted(reps, key=lambda rep: (rep["status"] != "online", -rep["utilization"], rep["id"]))[:REPS_SHOWN]
    statuses = collections.Counter(rep["status"] for rep in reps)
    return {
        "at": iso_ms(now_ms),
        "assigned_total": assigned,
        "reps_total": len(reps),
        "reps_by_status": {status: statuses.get(status, 0) for status in STATUSES},
        "reps_on_shift": sum(rep["on_shift"] for rep in reps),
        "reps": [
            {key: rep.get(key) for key in ("id", "name", "status", "on_shift", "load", "capacity", "utilization", "teams",
                                 "breaches")}
            for rep in shown
        ],
        "queues": queues,
        # Counts since the workspace began: the page shows what changed since it was opened.
        "breaches_total": sum(breaches_by_rep.values()),
        "teams": team_figures(reps),
        "fairness": list(fairness),
        "recent": [
            {**assignment.event(), "latency_ms": assignment.assigned_at_ms - assignment.accepted_at_ms}
            for assignment in recent
        ],
    }


def export_gauges(current: dict[str, Any], reps: list[dict[str, Any]]) -> None:
    for queue in current["queues"]:
        metrics.queue_waiting_leads.labels(queue["name"]).set(queue["waiting"])
        metrics.queue_oldest_wait_seconds.labels(queue["name"]).set(queue["oldest_wait_s"])
        metrics.queue_ready_reps.labels(queue["name"]).set(queue["ready"])
        metrics.queue_online_reps.labels(queue["name"]).set(queue["online"])
        metrics.queue_offered_leads.labels(queue["name"]).set(queue["offered"])
        metrics.queue_pooled_leads.labels(queue["name"]).set(queue["pooled"])
    metrics.assignments_total_workspace.set(current["assigned_total"])
    for status, count in current["reps_by_status"].items():
        metrics.reps_by_status.labels(status).set(count)
    metrics.reps_on_shift.set(current["reps_on_shift"])
    # Cleared and refilled in one synchronous step, so a team that is gone stops being reported
    # and no scrape sees the gauges half-filled.
    for per_team in (metrics.team_reps_by_status, metrics.team_load_leads, metrics.team_capacity_leads,
                     metrics.team_reps_by_utilization):
        per_team.clear()
    for team in current["teams"]:
        for status in STATUSES:
            metrics.team_reps_by_status.labels(status, team["name"]).set(team["reps"][status])
            metrics.team_load_leads.labels(team["name"], status).set(team["load"][status])
        metrics.team_capacity_leads.labels(team["name"]).set(team["capacity_online"])
    for team, members in members_by_team(reps).items():
        online = [rep for rep in members if rep["status"] == "online"]
        for bound in metrics.UTILIZATION_BUCKETS:
            count = sum(utilization(rep) <= bound for rep in online)
            metrics.team_reps_by_utilization.labels(team, f"{bound:g}").set(count)
    metrics.top_rep_utilization_ratio.clear()
    online_reps = sorted((rep for rep in reps if rep["status"] == "online"), key=utilization, reverse=True)
    for rep in online_reps[: metrics.TOP_REPS]:
        metrics.top_rep_utilization_ratio.labels(rep["id"]).set(utilization(rep))


async def export_consumer_lag() -> None:
    consumer = app.consumer
    metrics.consumer_lag_messages.clear()
    for tp in consumer.assignment():
        if tp.topic != leads_topic.get_topic_name():
            continue
        highwater, position = consumer.highwater(tp), await consumer.position(tp)
        if highwater is not None and position is not None:
            metrics.consumer_lag_messages.labels(str(tp.partition)).set(max(0, highwater - position))


def _keep(current: dict[str, Any]) -> None:
    global _sampled_at
    latest.clear()
    latest.update(current)
    _sampled_at = time.monotonic()


async def sample_live_state() -> None:
    """A worker's timer (every SAMPLE_EVERY_S)."""
    try:
        reps = await store.reps()
        current = await snapshot(reps)
        export_gauges(current, reps)
        await export_consumer_lag()
    except Exception:  # noqa: BLE001 - the page and gauges keep their last picture until redis answers
        log.exception("live sample failed")
        return
    _keep(current)


async def picture() -> dict[str, Any]:
    """The picture a page shows: a worker's latest sample (one of its own before the timer's first;
    the fairness figures stay the timer's, which exports them too). An api process, where no timer
    samples, samples here unless it did within the last SAMPLE_EVERY_S. A failure here is the
    request's (the caller answers it)."""
    if settings.process_role != "api":
        return latest or await snapshot(await store.reps())
    async with _sampling:
        if time.monotonic() - _fairness_sampled_at >= settings.fairness_sample_s:
            _keep_fairness(await store.fairness(settings.fairness_window_s))
        if time.monotonic() - _sampled_at >= SAMPLE_EVERY_S:
            _keep(await snapshot(await store.reps()))
    return latest


def export_fairness(figures: list[dict[str, Any]]) -> None:
    # Cleared and refilled in one synchronous step, so a queue the routing dropped stops being reported.
    for gauge in (metrics.fairness_gini_ratio, metrics.fairness_spread_leads, metrics.fairness_window_leads):
        gauge.clear()
    for queue in figures:
        metrics.fairness_gini_ratio.labels(queue["queue"]).set(queue["gini"])
        metrics.fairness_spread_leads.labels(queue["queue"]).set(queue["spread"])
        metrics.fairness_window_leads.labels(queue["queue"]).set(queue["assignments"])


def _keep_fairness(figures: list[dict[str, Any]]) -> None:
    global _fairness_sampled_at
    fairness[:] = figures
    _fairness_sampled_at = time.monotonic()


@survives("sample_fairness")
async def sample_fairness() -> None:
    """A worker's timer (every fairness_sample_s)."""
    figures = await store.fairness(settings.fairness_window_s)
    export_fairness(figures)
    _keep_fairness(figures)
