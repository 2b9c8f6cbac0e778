"""The one faust App, its topics and the live state it works on.

Settings are read from the environment once, here, when a worker starts; everything else gets
them from `app.settings`.

An api process (`dispatcher api`, DISPATCHER_PROCESS_ROLE=api) is this same App in faust's
`producer_only` mode. faust's BootStrategy.producer_only() starts the web server and the producer
and nothing else: no consumer, so the process never joins the leads consumer group; no table
manager or recovery (tables.manager waits for recovery only outside that mode); no agents
(agents.manager starts none in it). Timers and tasks are not covered by the mode (the App starts
every one registered), so what registers them is chosen by role: dispatcher/agents.py only in a
worker, dispatcher/api_process.py only in an api process (dispatcher/cli.py). The alternatives
were worse: `client_only` starts a consumer for RPC replies, and a plain aiohttp app would need
every view, the middleware and the web options ported off faust's `app.page` and kept in step
with the worker's.
"""

from __future__ import annotations

from dispatcher.http import make_middleware
from dispatcher.notify import Hub
from dispatcher.routing import load_routing
from dispatcher.settings import Settings
from dispatcher.state.keys import Keys
from dispatcher.state.layout import connect
from dispatcher.state.store import Store
from dispatcher.transport import StreamApp


async def _lead_owner(lead_id: str) -> str | None:
    """The rep a lead is assigned to, for the rep-token check (the store is made below the app)."""
    record = await store.lead(lead_id)
    return (record or {}).get("rep_id") or None


class DispatcherApp(StreamApp):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            f"{settings.topic_prefix}{settings.group_id}",
            settings,
            # faust listens on web_bind; web_host only names the host in URLs it advertises.
            web_bind=settings.http_bind,
            web_port=settings.http_port,
            # faust's own pages (/router/, /table/) are no part of the API (dispatcher/openapi.py).
            web_router_enabled=False,
            web_tables_enabled=False,
            web_application_options={
                "middlewares": [make_middleware(settings, lead_owner=_lead_owner)],
                "client_max_size": settings.max_body_bytes,
            },
        )
        self.consuming = False
        self.producer_only = settings.process_role == "api"


settings = Settings()
app = DispatcherApp(settings)

leads_topic = app.topic(settings.topic("leads"))
assignments_topic = app.topic(settings.topic("assignments"))
rep_events_topic = app.topic(settings.topic("rep-events"))
leads_dlq_topic = app.topic(settings.topic("leads-dlq"))
lead_events_topic = app.topic(settings.topic("lead-events"))

store = Store(
    connect(settings.redis_url, settings.redis_max_connections),
    Keys(settings.workspace),
    load_routing(settings.routing),
    settings.presence_ttl_s,
)
# This worker's one reader of the notifications stream, for all its SSE connections.
hub = Hub(store.client, store.keys.notifications)


async def declare_topics() -> None:
    """Every topic exists, with the configured partitions, before anyone reads or writes it:
    consumers of `assignments` or `leads-dlq` may subscribe before the first record is written, and
    an api process may take leads before any worker ran. Registered as a task by each role."""
    for topic in (leads_topic, assignments_topic, rep_events_topic, leads_dlq_topic, lead_events_topic):
        await topic.maybe_declare()


@app.on_partitions_assigned.connect
async def _mark_consuming(sender: object, assigned: object, **kwargs: object) -> None:
    app.consuming = True
