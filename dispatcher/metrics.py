"""Every metric the dispatcher exports, declared once, units in the names, buckets explicit.

Counters and histograms are per worker: Prometheus adds them up across workers with sum().
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Decisions are one Redis round trip; produce -> assign crosses the broker twice.
DECISION_BUCKETS_MS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 25, 50, 100, 250)
END_TO_END_BUCKETS_MS = (1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 250, 500, 1000, 2500, 5000)

leads_received_total = Counter(
    "dispatcher_leads_received_total", "Lead records read from the leads topic", ["source"]
)
leads_decided_total = Counter(
    "dispatcher_leads_decided_total",
    "Routing decisions, by queue and outcome (assigned, queued, duplicate, replay)",
    ["queue", "strategy", "outcome"],
)
leads_drained_total = Counter(
    "dispatcher_leads_drained_total", "Waiting leads assigned because capacity freed", ["queue", "strategy"]
)
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
    "From the lead's Kafka timestamp to its assignment event being handed to the producer",
    buckets=END_TO_END_BUCKETS_MS,
)
routing_reloads_total = Counter(
    "dispatcher_routing_reloads_total", "Routing file changes seen, by result (applied, refused)", ["result"]
)
