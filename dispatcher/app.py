"""The one faust App, its topics and the live state it works on.

Settings are read from the environment once, here, when a worker starts; everything else gets
them from `app.settings`.
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


@app.on_partitions_assigned.connect
async def _mark_consuming(sender: object, assigned: object, **kwargs: object) -> None:
    app.consuming = True
