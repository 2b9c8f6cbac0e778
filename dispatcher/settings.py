"""The one settings object: read from the environment (and `.env`) once at start-up, then passed down."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", env_file=".env", extra="ignore")

    broker: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(64, ge=1, le=10_000)
    http_port: int = Field(6066, ge=1, le=65535)
    # The address the HTTP server listens on; `dispatcher dev` and the tests use 127.0.0.1.
    http_bind: str = "0.0.0.0"
    routing: Path | None = None
    routing_poll_s: float = Field(2.0, gt=0)
    topic_prefix: str = ""
    # The consumer group; prefixed like the topics, so prefixed deployments never share a group.
    group_id: str = "lead-dispatcher"
    # Namespaces every Redis key, so several dispatchers (or test runs) can share one redis.
    workspace: str = Field("main", pattern=r"^[A-Za-z0-9_-]{1,32}$")

    api_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Digests only (dispatcher/access.py); combined with api_tokens when both are set.
    api_tokens_file: Path | None = None
    allow_anonymous: bool = False

    # docs/stack-notes.md: the embedded broker answers a fetch only after the whole wait, so this is the latency floor there.
    consumer_fetch_max_wait_ms: int = Field(5, ge=0, le=10_000)
    # Tansu gives up a long partition's fetch when the wait runs out, so the wait grows to this (at least the floor).
    consumer_fetch_max_wait_ceiling_ms: int = Field(1000, ge=0, le=60_000)
    # How long a fetched run of records that skips an offset waits for the broker to fill it in
    # (dispatcher/offset_holes.py). 0, for Apache Kafka: its holes are for good. The embedded stack sets it.
    consumer_offset_hole_patience_ms: int = Field(0, ge=0, le=600_000)
    topic_partitions: int = Field(4, ge=1, le=1024)
    # Short timeouts let a restarted worker rejoin in seconds instead of ~30 s (docs/stack-notes.md).
    broker_session_timeout_s: float = Field(10.0, gt=0)
    broker_rebalance_timeout_s: float = Field(10.0, gt=0)
    broker_heartbeat_interval_s: float = Field(1.0, gt=0)
    commit_interval_s: float = Field(1.0, gt=0)

    presence_ttl_s: float = Field(60.0, gt=0)
    # How often each worker looks for holds that ran out and overflows that fell due: how late past
    # its time such a lead can move.
    due_poll_s: float = Field(0.5, gt=0, le=60)
    # Closed leads leave Redis after this; their whole record went to `lead-events` when they closed.
    closed_lead_retention_s: float = Field(7 * 24 * 3600.0, ge=0)
    # The assignment log (GET /v1/stats/fairness) keeps this long; no window may reach further back.
    fairness_retention_s: int = Field(24 * 3600, ge=60, le=90 * 24 * 3600)
    # The window the fairness gauges and the live page's fairness panel count over, and how often.
    fairness_window_s: int = Field(3600, ge=1, le=90 * 24 * 3600)
    fairness_sample_s: float = Field(15.0, gt=0)
    # GET /v1/reps/{id}/history reaches this far back; older entries of the rep log are dropped.
    rep_history_retention_s: float = Field(7 * 24 * 3600.0, gt=0)
    # Every notification (an assignment, an offer) is POSTed here as JSON, signed with the secret
    # (X-Dispatcher-Signature: sha256=<hex HMAC-SHA256 of the body>); empty: no webhooks.
    webhook_url: str = ""
    webhook_secret: str = ""
    # A delivery is tried this many times, the waits between doubling from the first, then dead-lettered.
    webhook_attempts: int = Field(6, ge=1, le=100)
    webhook_backoff_s: float = Field(0.5, gt=0, le=60)
    webhook_timeout_s: float = Field(5.0, gt=0, le=120)
    # A worker that died with events taken from the outbox and not yet sent gives them up after this.
    outbox_claim_idle_s: float = Field(5.0, gt=0)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    worker_id: str = ""
    # What this process does (README, "API processes"): `all` consumes leads, runs the timers and
    # relays, and serves the HTTP API; `api` only serves the HTTP API, beside workers that do the
    # rest. Set by the command (`dispatcher worker` / `dispatcher api`), read once when the app is made.
    process_role: Literal["all", "api"] = "all"
    # The event loop the process runs on: uvloop (libuv) spends less per event than asyncio's own
    # (docs/benchmarks.md, "The knee"); asyncio where uvloop cannot be installed.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # faust insists on a data directory even without tables; keep it out of the working tree.
    data_dir: Path = Path(tempfile.gettempdir()) / "lead-dispatcher"
    # The most leads one Redis round trip decides; batches form only while a previous one runs.
    batch_max: int = Field(200, ge=1, le=10_000)
    # How long a batch's first lead waits for others to join it (dispatcher/batches.py says why).
    batch_linger_ms: float = Field(5.0, ge=0, le=1000)
    log_level: str = "info"

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @field_validator("api_tokens_file", mode="before")
    @classmethod
    def _blank_is_no_file(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _fairness_window_within_retention(self) -> Settings:
        if self.fairness_window_s > self.fairness_retention_s:
            raise ValueError(f"DISPATCHER_FAIRNESS_WINDOW_S ({self.fairness_window_s}) reaches past what the assignment "
                             f"log keeps (DISPATCHER_FAIRNESS_RETENTION_S, {self.fairness_retention_s})")
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
