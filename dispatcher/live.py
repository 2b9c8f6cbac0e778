"""The live picture supervisors watch: one snapshot of reps, queues and the latest assignments,
sampled from Redis once a second by each worker and shared by every page and the gauges."""

from __future__ import annotations

import collections
import logging
from typing import Any

from dispatcher import metrics
from dispatcher.app import app, leads_topic, store
from dispatcher.state.store import iso_ms

log = logging.getLogger(__name__)
REPS_SHOWN = 200
SAMPLE_EVERY_S = 1.0

latest: dict[str, Any] = {}


def open_leads(value: int | dict[str, int]) -> int:
    return sum(value.values()) if isinstance(value, dict) else value


def utilization(rep: dict[str, Any]) -> float:
    capacity = open_leads(rep["capacity"])
    return open_leads(rep["load"]) / capacity if capacity else 0.0


def has_room(rep: dict[str, Any]) -> bool:
    if isinstance(rep["capacity"], dict):
        return any(rep["load"].get(channel, 0) < cap for channel, cap in rep["capacity"].items())
    return rep["load"] < rep["capacity"]


async def snapshot(reps: list[dict[str, Any]]) -> dict[str, Any]:
    queues, recent = await store.queue_figures(), await store.recent_assignments()
    assigned, now_ms = await store.assigned_count(), await store.now_ms()
    for rep in reps:
        rep["utilization"] = round(utilization(rep), 3)
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
        "reps_by_status": {status: statuses.get(status, 0) for status in ("online", "away", "offline")},
        "reps": [
            {key: rep.get(key) for key in ("id", "name", "status", "load", "capacity", "utilization", "teams")}
            for rep in shown
        ],
        "queues": queues,
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
    metrics.assignments_total_workspace.set(current["assigned_total"])
    by_team: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for rep in reps:
        for team in rep.get("teams") or ["(none)"]:
            by_team[team].append(rep)
    for status, count in current["reps_by_status"].items():
        metrics.reps_by_status.labels(status).set(count)
    # Cleared and refilled in one synchronous step, so a team that is gone stops being reported
    # and no scrape sees the gauges half-filled.
    for per_team in (metrics.team_reps_by_status, metrics.team_load_leads, metrics.team_capacity_leads,
                     metrics.team_reps_by_utilization):
        per_team.clear()
    for team, members in by_team.items():
        statuses = collections.Counter(rep["status"] for rep in members)
        for status in ("online", "away", "offline"):
            metrics.team_reps_by_status.labels(status, team).set(statuses.get(status, 0))
        online = [rep for rep in members if rep["status"] == "online"]
        metrics.team_load_leads.labels(team).set(sum(open_leads(rep["load"]) for rep in members))
        metrics.team_capacity_leads.labels(team).set(sum(open_leads(rep["capacity"]) for rep in online))
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


@app.timer(interval=SAMPLE_EVERY_S)
async def sample_live_state() -> None:
    try:
        reps = await store.reps()
        current = await snapshot(reps)
        export_gauges(current, reps)
        await export_consumer_lag()
    except Exception:  # noqa: BLE001 - the page and gauges keep their last picture until redis answers
        log.exception("live sample failed")
        return
    latest.clear()
    latest.update(current)
