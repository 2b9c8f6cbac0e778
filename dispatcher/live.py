"""The live picture supervisors watch: one snapshot of reps, queues and the latest assignments,
shared by every page and, in a worker, the gauges. It is sampled from Redis when asked, by a page
or (in a worker) a scrape of /metrics, at most once a second for all of them, so that nobody asking
costs nothing. A timer once sampled it every second on every worker: a read of the whole roster
and a snapshot built from it (60-100 ms of wall time with 200 reps, growing with the roster), for
gauges Prometheus reads every 15 s or so. A scrape sees a picture at most SAMPLE_EVERY_S old. An api
process exports no gauges: the workers do, and every worker's are the same workspace-wide figures."""

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
# Well inside Prometheus's default scrape timeout (10 s).
GAUGES_SAMPLE_TIMEOUT_S = 3.0
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


async def picture() -> dict[str, Any]:
    """The picture a page shows, sampled here unless it was within the last SAMPLE_EVERY_S. A worker
    exports its gauges with each sample (its fairness figures stay its timer's, which exports them
    too). A failure here is the request's (the caller answers it)."""
    worker = settings.process_role != "api"
    async with _sampling:
        if not worker and time.monotonic() - _fairness_sampled_at >= settings.fairness_sample_s:
            _keep_fairness(await store.fairness(settings.fairness_window_s))
        if time.monotonic() - _sampled_at >= SAMPLE_EVERY_S:
            reps = await store.reps()
            current = await snapshot(reps)
            if worker:
                export_gauges(current, reps)
                await export_consumer_lag()
            _keep(current)
    return latest


async def refresh_gauges() -> None:
    """Before a process answers a scrape; an api process has no gauges of these to refresh. If
    Redis does not answer within GAUGES_SAMPLE_TIMEOUT_S, the scrape gets the gauges of the last
    sample, and the failure goes to the log."""
    if settings.process_role == "api":
        return
    try:
        await asyncio.wait_for(picture(), GAUGES_SAMPLE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - a scrape must be answered; the gauges keep their last picture until redis answers
        log.exception("live sample for the gauges failed")


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
