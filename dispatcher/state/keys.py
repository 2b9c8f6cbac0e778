"""Every Redis key the dispatcher uses, with its type and purpose.

All keys of one workspace share the hash tag ``{workspace}``: one decision touches the lead, the
rep and the ready index of every queue the rep is in, and Redis Cluster runs a script only when
all its keys live in one slot. A deployment shards by workspace, not by queue (see the design notes
in README). The ``v2`` in the prefix changes whenever a layout below changes meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_VERSION = "v2"

# Redis keeps a hash of up to hash-max-listpack-entries fields (512 by default) and a sorted set of
# up to zset-max-listpack-entries members (128) as one packed list, and finds a field or member in
# it by a scan. The roster below keeps a field or member per rep in one key (rep:load, rep:cap,
# rep:seen, ...), and a decision looks a rep up in them a dozen times: with 100 to 200 reps those
# scans were 15% of a decision's instructions in Redis (docs/benchmarks.md). Redis settings for the servers
# the dispatcher uses, passed to the ones it starts and advised at a worker's start.
ENCODING_CEILINGS = {"hash-max-listpack-entries": 32, "zset-max-listpack-entries": 32}


@dataclass(frozen=True)
class Keys:
    workspace: str

    def _key(self, name: str) -> str:
        return f"dsp:{KEY_VERSION}:{{{self.workspace}}}:{name}"

    @property
    def leads(self) -> str:
        """HASH lead id -> JSON record (status, rep, queue, the lead body as sent, what the scripts
        route by, decision facts, history)."""
        return self._key("leads")

    @property
    def rep_profiles(self) -> str:
        """HASH rep id -> JSON profile as last PUT (name, capacity, skills, attributes, teams)."""
        return self._key("rep:profiles")

    @property
    def rep_capacity(self) -> str:
        """HASH "rep|bucket" -> capacity; bucket "*" when one number covers every channel."""
        return self._key("rep:cap")

    @property
    def rep_load(self) -> str:
        """HASH "rep|bucket" -> open leads counted against that bucket."""
        return self._key("rep:load")

    @property
    def rep_skills(self) -> str:
        """HASH "rep|skill" -> level 1..10."""
        return self._key("rep:skills")

    @property
    def rep_rank(self) -> str:
        """HASH rep id -> rank (higher is better), from the rep's `rank` attribute."""
        return self._key("rep:rank")

    @property
    def rep_status(self) -> str:
        """HASH rep id -> online | away | offline, as last set."""
        return self._key("rep:status")

    @property
    def rep_seen(self) -> str:
        """ZSET rep id scored by its last heartbeat (ms, Redis clock)."""
        return self._key("rep:seen")

    @property
    def rep_last_assigned(self) -> str:
        """HASH rep id -> time of its last assignment (ms, Redis clock; 0 = never)."""
        return self._key("rep:last_assigned")

    @property
    def recent_assignments(self) -> str:
        """LIST of the latest assignments (JSON rows as the scripts return them), newest first,
        capped in Lua: what the supervisor page shows."""
        return self._key("recent:assignments")

    @property
    def assigned_count(self) -> str:
        """STRING counter of every assignment ever made in the workspace, across all workers."""
        return self._key("stats:assigned")

    @property
    def open_leads(self) -> str:
        """ZSET (scores 0) of "rep|lead" for every assigned lead not yet closed: a rep's open leads
        are one BYLEX range, and a lead can give its unit back only once."""
        return self._key("open")

    @property
    def outbox(self) -> str:
        """STREAM of events written in the same script as the change they announce (fields topic,
        key, and value or row); the workers relay them to Kafka and delete them once delivered."""
        return self._key("outbox")

    @property
    def routing(self) -> str:
        """HASH of the routing in force: version (a counter; "0" before the first), spec (JSON),
        fingerprint, source, at (ms), by. Every script checks the version it was built for."""
        return self._key("routing")

    @property
    def routing_history(self) -> str:
        """LIST of the routings applied, newest first (JSON: version, fingerprint, source, at, by)."""
        return self._key("routing:history")

    @property
    def closed_leads(self) -> str:
        """ZSET lead id scored by when it closed (ms): the records expire_closed forgets after the retention."""
        return self._key("closed")

    @property
    def roster_version(self) -> str:
        """STRING counter moved on by every profile change, so a routing change knows whether the
        profiles it computed memberships from are still the roster."""
        return self._key("roster:version")

    @property
    def rep_weight(self) -> str:
        """HASH rep id -> weight (> 0), from the rep's `weight` attribute: its share in weighted queues."""
        return self._key("rep:weight")

    @property
    def owners(self) -> str:
        """HASH customer ("field=value", as a sticky queue names it) -> "rep|lead": the rep its last lead
        went to, and that lead, whose expiry (expire_closed.lua) takes the entry with it."""
        return self._key("owners")

    @property
    def held_leads(self) -> str:
        """ZSET (scores 0) of "rep|band accepted|lead" (band = 9 - priority, accepted in ms, 14 digits)
        for leads a sticky queue holds for their customer's last rep until it is free or the wait runs
        out: a rep's held leads are one BYLEX range, best first. A held lead is queued but in no wait set."""
        return self._key("held")

    @property
    def due(self) -> str:
        """ZSET lead id scored by when it must be looked at again (ms): a sticky hold running out; for a
        lead waiting in a queue with an overflow or a pool after_s, the earlier of when it has waited
        there the overflow time and the pool time; for an offered lead the earlier of its offer's end
        and its rep's presence expiry; for an assigned lead of a queue with an SLA not yet contacted,
        its first-contact deadline. The move_due step takes what is due."""
        return self._key("due")

    @property
    def outcomes(self) -> str:
        """HASH "rep|day|closed" and "rep|day|won" -> assigned leads the rep closed that day, and
        closed won (day = days since 1970, Redis clock); "rep|since" -> the oldest day kept. Closes
        prune days older than strategies.base.OUTCOME_DAYS: conversion over a window, for
        performance queues."""
        return self._key("outcomes")

    @property
    def assignment_log(self) -> str:
        """ZSET "queue|rep|lead" scored by when it was assigned (ms), written by every assignment and
        kept for DISPATCHER_FAIRNESS_RETENTION_S (a timer drops older entries): assignments per rep
        per queue over any window up to it (GET /v1/stats/fairness)."""
        return self._key("log:assignments")

    @property
    def notifications(self) -> str:
        """STREAM of what reached a rep (fields rep, and row or moved, an assignment row, or value,
        JSON), written by the step that decided it; trimmed to about lib.lua's NOTIFY_KEPT entries.
        Each worker reads it once for all its SSE connections (dispatcher/notify.py); the webhook
        relay reads it as the consumer group "webhooks"."""
        return self._key("notify")

    @property
    def rep_log(self) -> str:
        """ZSET (scores 0) of "rep|time|event id|JSON" (time in microseconds, 16 digits; the JSON is the
        lead event as on lead-events, with its event_id): every lead event that concerns a rep, a rep's log one
        BYLEX range in time order (GET /v1/reps/{id}/history). Kept DISPATCHER_REP_HISTORY_RETENTION_S."""
        return self._key("log:reps")

    @property
    def rep_log_oldest(self) -> str:
        """ZSET rep id scored by the time (ms) of its oldest entry in the rep log, or earlier: the
        retention step visits only reps with something to drop."""
        return self._key("log:reps:oldest")

    @property
    def webhook_dead_letters(self) -> str:
        """LIST of webhook deliveries given up after every retry (JSON: event, url, error, attempts,
        at), newest first, capped (dispatcher/webhooks.py)."""
        return self._key("webhooks:dead")

    @property
    def offer_timeouts(self) -> str:
        """HASH rep id -> offers it let time out in a row (an accept or reject resets it): at a queue's
        away_after_timeouts the rep is set away."""
        return self._key("rep:offer_timeouts")

    @property
    def claims(self) -> str:
        """ZSET (scores 0) of "rep|queue|claimed ms (14 digits)|lead" for claims from the pool of a queue
        with a claims-per-hour limit: a rep's claims in the last hour are one ZLEXCOUNT, and each
        claim drops that rep's older entries of the queue, so at most the limit stay per rep and queue."""
        return self._key("claims")

    @property
    def offers(self) -> str:
        """ZSET (scores 0) of "queue|lead" for every offered lead, kept in step with the lead's status
        by lib.lua's save_record (the record remembers its entry): a queue's offers awaiting an answer
        are one ZLEXCOUNT, read every second by the live page."""
        return self._key("offers")

    @property
    def breach_counts(self) -> str:
        """HASH "queue|rep" -> first-contact SLA breaches of that rep in that queue since the workspace
        began, counted by the breach in move_due.lua: the live page's breaches per queue and per rep
        in one HGETALL (bounded by the queue and rep pairs that ever breached, not by leads)."""
        return self._key("stats:breaches")

    @property
    def rep_shift(self) -> str:
        """HASH rep id -> "on" | "off": whether its schedule has it on shift, as last applied (upsert_rep,
        shift). A rep without an entry (no schedule) is always on shift; an off-shift rep is in no ready
        index and gets no new leads, offers, claims or drains."""
        return self._key("rep:shift")

    @property
    def rep_shift_due(self) -> str:
        """ZSET rep id scored by when its shift state next flips (ms): the shift timer recomputes the
        reps that are due (Python computes schedules; Lua has no time zones). A rep whose schedule
        never flips again has no entry."""
        return self._key("rep:shift_due")

    @property
    def queue_prefix(self) -> str:
        """What every per-queue key below starts with (`dispatcher check` scans for leftovers by it)."""
        return self._key("q:")

    def queue_members(self, queue: str) -> str:
        """SET of rep ids eligible for the queue by its static filters (teams, skills, attributes)."""
        return self._key(f"q:{queue}:members")

    def queue_state(self, queue: str) -> str:
        """HASH of what the queue's strategy remembers between decisions, so it survives restarts
        and roster changes: "cursor" (the rep a rotation served last), "pass|rep" (a rep's weighted
        turns, strategies/base.py TURNS), "vt|<channel>" (the pass the channel's last weighted turn was
        taken at), "vt" (the highest of those),
        "draws" (random draws so far, one input of each draw)."""
        return self._key(f"q:{queue}:state")

    def queue_ready(self, queue: str, bucket: str) -> str:
        """ZSET (all scores 0, ordered by member bytes) of "sortkey|rep" for members that are
        online with room in that capacity bucket; the sort key is the queue strategy's order."""
        return self._key(f"q:{queue}:ready:{bucket}")

    def queue_wait(self, queue: str, channel: str) -> str:
        """ZSET lead id scored (9 - priority) * 1e13 + accepted ms: how many wait, and the oldest."""
        return self._key(f"q:{queue}:wait:{channel}")

    def queue_wait_index(self, queue: str, channel: str) -> str:
        """ZSET (all scores 0, ordered by member bytes) of "skills|band accepted|lead id" for the same
        leads: grouped by the skills they ask for, best first, so a drain reads one head per group."""
        return self._key(f"q:{queue}:waitidx:{channel}")

    def queue_pool(self, queue: str) -> str:
        """ZSET lead id scored (9 - priority) * 1e13 + accepted ms: the queue's claim pool, best first.
        Reps claim from it; nothing drains it."""
        return self._key(f"q:{queue}:pool")

    def fixed(self) -> list[str]:
        """The keys every script takes first, in the order lib.lua expects."""
        return [
            self.leads, self.rep_profiles, self.rep_capacity, self.rep_load, self.rep_skills,
            self.rep_rank, self.rep_status, self.rep_seen, self.rep_last_assigned,
            self.recent_assignments, self.assigned_count, self.open_leads, self.outbox, self.routing,
            self.closed_leads, self.roster_version, self.rep_weight, self.owners, self.held_leads, self.due,
            self.outcomes, self.assignment_log, self.notifications, self.rep_log, self.rep_log_oldest,
            self.offer_timeouts, self.claims, self.offers, self.breach_counts, self.rep_shift,
            self.rep_shift_due,
        ]
