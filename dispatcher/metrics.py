"""Every metric the dispatcher exports, declared once, units in the names, buckets explicit.

Counters and histograms are per worker: Prometheus adds them up across workers with sum().
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Decisions are one Redis round trip; produce -> assign crosses the broker twice.
DECISION_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 25, 50, 100, 250)
END_TO_END_BUCKETS_MS = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 250, 500, 1000, 2500, 5000)
# A lead that waited did so until capacity freed: seconds to tens of minutes, around the SLA (120 s).
WAIT_BUCKETS_S = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)

# Every lead is counted once as source="kafka" when a worker reads it from the topic, however it
# came; source="http" counts in addition those a worker accepted over POST /v1/leads.
leads_received_total = Counter(
    "dispatcher_leads_received_total",
    "Leads received: kafka = read from the leads topic (all of them), http = accepted over HTTP first",
    ["source"],
)
leads_decided_total = Counter(
    "dispatcher_leads_decided_total",
    "Routing decisions, by queue and outcome (assigned, queued, duplicate, replay)",
    ["queue", "strategy", "outcome"],
)
leads_drained_total = Counter(
    "dispatcher_leads_drained_total", "Waiting leads assigned because capacity freed", ["queue", "strategy"]
)
waited_before_assignment_seconds = Histogram(
    "dispatcher_waited_before_assignment_seconds",
    "From acceptance to assignment, for leads that waited in a queue until capacity freed",
    buckets=WAIT_BUCKETS_S,
)
leads_reassigned_total = Counter(
    "dispatcher_leads_reassigned_total", "Leads moved to another rep by a supervisor", ["queue", "strategy"]
)
sla_breaches_total = Counter(
    "dispatcher_sla_breaches_total",
    "Assigned leads whose rep did not contact them within the queue's first-contact SLA, by queue and rep",
    ["queue", "rep"],
)
leads_pooled_total = Counter(
    "dispatcher_leads_pooled_total", "Leads moved into a queue's claim pool by the due step (waited too long)"
)
offer_answers_total = Counter(
    "dispatcher_offer_answers_total",
    "How offers ended: accepted or rejected (over HTTP), or ran_out (timed out, or returned by a rep that left)",
    ["answer"],
)
pool_claims_total = Counter("dispatcher_pool_claims_total", "Leads claimed from a claim pool over HTTP")
leads_dlq_total = Counter("dispatcher_leads_dlq_total", "Inputs sent to the dead-letter topic", ["reason"])
http_rejected_total = Counter(
    "dispatcher_http_rejected_total", "HTTP requests refused for bad input", ["endpoint", "status"]
)
decision_duration_ms = Histogram(
    "dispatcher_decision_duration_ms",
    "Time of the atomic Redis step that decides one lead (batched calls are divided evenly)",
    buckets=DECISION_BUCKETS_MS,
)
lead_to_assignment_ms = Histogram(
    "dispatcher_lead_to_assignment_ms",
    "From the lead's Kafka timestamp to its decision in Redis (its event follows through the outbox)",
    buckets=END_TO_END_BUCKETS_MS,
)
# The outbox: events written by the Lua steps, relayed to Kafka by the workers (dispatcher/outbox.py).
outbox_events_relayed_total = Counter(
    "dispatcher_outbox_events_relayed_total", "Events relayed from the outbox to Kafka, by topic", ["topic"]
)
outbox_delay_ms = Histogram(
    "dispatcher_outbox_delay_ms", "From an event's write in the outbox to Kafka having it",
    buckets=END_TO_END_BUCKETS_MS,
)
outbox_backlog_events = Gauge(
    "dispatcher_outbox_backlog_events", "Events in the outbox not yet relayed (workspace-wide: take max())"
)
outbox_relay_failures_total = Counter(
    "dispatcher_outbox_relay_failures_total", "Relay rounds that failed and will be retried, by cause", ["cause"]
)
# Redis refusing writes (READONLY during a failover, OOM, LOADING) or away: the work waits and is retried.
redis_unavailable_total = Counter(
    "dispatcher_redis_unavailable_total", "Redis calls that found Redis away or refusing writes, by operation",
    ["operation"],
)
# The operations that count here from the start, so the alert's rate() has a series before the first refusal.
for operation in ("decide", "http"):
    redis_unavailable_total.labels(operation)
# Likewise every way an offer ends and every webhook result: the dashboard's rates have a series from the start.
for answer in ("accepted", "rejected", "ran_out"):
    offer_answers_total.labels(answer)
background_failures_total = Counter(
    "dispatcher_background_failures_total", "Runs of a timer or background task that failed and were retried",
    ["task"],
)
closed_leads_expired_total = Counter(
    "dispatcher_closed_leads_expired_total", "Closed leads forgotten by Redis after the retention"
)
assignments_forgotten_total = Counter(
    "dispatcher_assignments_forgotten_total", "Assignment log entries dropped after DISPATCHER_FAIRNESS_RETENTION_S"
)
rep_history_forgotten_total = Counter(
    "dispatcher_rep_history_forgotten_total", "Rep log entries dropped after DISPATCHER_REP_HISTORY_RETENTION_S"
)
sse_connections = Gauge("dispatcher_sse_connections", "Rep event streams (GET /v1/reps/{id}/events) open on this worker")
sse_dropped_total = Counter(
    "dispatcher_sse_dropped_total", "Rep event streams closed because the client read too slowly (it resumes with Last-Event-ID)"
)
notifications_delay_ms = Histogram(
    "dispatcher_notification_delay_ms", "From a decision's notification to its fan-out on this worker",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
)
webhook_deliveries_total = Counter(
    "dispatcher_webhook_deliveries_total", "Webhook POSTs by result: delivered, retried (a failed try), dead (given up); relay_error: redis failed the relay",
    ["result"],
)
for result in ("delivered", "retried", "dead"):
    webhook_deliveries_total.labels(result)
webhook_delivery_seconds = Histogram(
    "dispatcher_webhook_delivery_seconds",
    "From a webhook event's first POST to the receiver's 2xx: one try, or the tries and backoff waits a failing receiver cost",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
routing_reloads_total = Counter(
    "dispatcher_routing_reloads_total",
    "Routing changes seen, by result (applied, refused, unsettled: a file still being written)", ["result"]
)
# Per worker too, but a wait does not add up: dashboards take max() of it.
consumer_fetch_wait_seconds = Gauge(
    "dispatcher_consumer_fetch_wait_seconds",
    "The fetch wait the consumer uses now (it lengthens while the broker runs out of time on long topics)",
)

consumer_offset_holes_total = Counter(
    "dispatcher_consumer_offset_holes_total",
    "Fetched records that skipped an offset: refetched (read again from the hole) or taken (the hole stayed "
    "open for DISPATCHER_CONSUMER_OFFSET_HOLE_PATIENCE_MS and was read past)",
    ["outcome"],
)

# Gauges sampled from Redis by dispatcher/live.py when a worker is scraped. Every worker reports the same
# workspace-wide figure, so dashboards take max() of these (and sum() of the counters above).
UTILIZATION_BUCKETS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
TOP_REPS = 20

queue_waiting_leads = Gauge("dispatcher_queue_waiting_leads", "Leads waiting for capacity", ["queue"])
queue_oldest_wait_seconds = Gauge(
    "dispatcher_queue_oldest_wait_seconds", "How long the oldest waiting lead has waited", ["queue"]
)
queue_online_reps = Gauge("dispatcher_queue_online_reps", "Member reps online now", ["queue"])
queue_offered_leads = Gauge("dispatcher_queue_offered_leads", "Leads offered to a rep, awaiting an accept", ["queue"])
queue_pooled_leads = Gauge("dispatcher_queue_pooled_leads", "Leads in the queue's claim pool", ["queue"])
queue_ready_reps = Gauge("dispatcher_queue_ready_reps", "Reps online with room in the queue", ["queue"])
reps_by_status = Gauge("dispatcher_reps_by_status", "Reps by effective status, each rep once", ["status"])
reps_on_shift = Gauge("dispatcher_reps_on_shift", "Reps their schedule has on shift now (every rep without a schedule "
                      "is), whatever their status")
team_reps_by_status = Gauge("dispatcher_reps", "Reps by effective status and team (a rep in two teams counts in both)",
                            ["status", "team"])
team_load_leads = Gauge("dispatcher_team_load_leads", "Open leads held by the team's reps, by the reps' status",
                        ["team", "status"])
team_capacity_leads = Gauge("dispatcher_team_capacity_leads", "Capacity of the team's online reps", ["team"])
# Bounded labels for 10,000 reps: per-team counts by utilization band (for the heatmap) and only
# the TOP_REPS most loaded reps by name.
team_reps_by_utilization = Gauge(
    "dispatcher_team_reps_utilization_le", "Online reps of the team at or under this utilization", ["team", "le"]
)
top_rep_utilization_ratio = Gauge(
    "dispatcher_top_rep_utilization_ratio", f"Load/capacity of the {TOP_REPS} most loaded online reps", ["rep"]
)
assignments_total_workspace = Gauge(
    "dispatcher_workspace_assignments", "Assignments made in the workspace since it began, all workers"
)
consumer_lag_messages = Gauge(
    "dispatcher_consumer_lag_messages", "Leads on this worker's partitions not yet read", ["partition"]
)
# Sampled every DISPATCHER_FAIRNESS_SAMPLE_S over the last DISPATCHER_FAIRNESS_WINDOW_S (dispatcher/live.py);
# workspace-wide like the gauges above, so take max().
fairness_gini_ratio = Gauge(
    "dispatcher_fairness_gini_ratio",
    "How unevenly the queue's leads went round its members over the fairness window (0 = even, towards 1 = one rep)",
    ["queue"],
)
fairness_spread_leads = Gauge(
    "dispatcher_fairness_spread_leads", "The most leads a member got in the fairness window less the fewest", ["queue"]
)
fairness_window_leads = Gauge(
    "dispatcher_fairness_window_leads", "Assignments in the queue over the fairness window", ["queue"]
)
