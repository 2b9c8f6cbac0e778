"""What an api process (`dispatcher api`) runs beside the HTTP API (dispatcher/views.py, which
also registers the notifications reader its rep event streams need). Nothing here changes state:
leads go to the `leads` topic for the workers to decide, and every other step's events are written
into the outbox by the step itself and relayed by the workers (dispatcher/outbox.py). Why the api
process is the same App in faust's producer_only mode: dispatcher/app.py.
"""

from __future__ import annotations

from dispatcher.app import app, declare_topics, settings, store
from dispatcher.background import survives

# Leads may come in before any worker ran: the topic they go to must exist with its partitions.
app.task(declare_topics)


@app.timer(interval=settings.routing_poll_s)
@survives("follow_routing")
async def follow_routing() -> None:
    """The routing in force, as workers apply it (their file, or PUT /v1/routing on any process),
    taken up within one poll: leads and profiles are checked against its queues and channels.
    The version alone is read while it stays the same."""
    await store.adopt_routing()
