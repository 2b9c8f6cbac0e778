"""The bare limit the dispatcher is measured against (`make bench`): consume a topic and produce one
small event per message, nothing in between. Two ways, each meant to run as its own process so it
gets a core of its own as a worker does and shares no event loop with the measuring side:

    python -m loadtest.relays aiokafka --broker kafka://127.0.0.1:P --in T --out T [--port P]
    python -m loadtest.relays faust    --broker kafka://127.0.0.1:P --in T --out T --port HTTP_PORT

Input records are JSON with an `id`; each output record is `{"lead_id": id}` under the same key,
the shape the bench matches the dispatcher's assignment events by. Both consume with a 5 ms fetch
wait (the dispatcher's default, docs/stack-notes.md) that grows while the broker falls short on a long topic,
as the dispatcher's does (dispatcher/fetch_wait.py), from the earliest offset (the aiokafka relay
without a consumer group, the faust one in a new group), so records produced before a relay starts
are relayed too. Each prints "ready" once it has its partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

FETCH_MAX_WAIT_MS = 5
FETCH_MAX_WAIT_CEILING_MS = 1000


def relay_event(value: bytes) -> bytes:
    return orjson.dumps({"lead_id": orjson.loads(value)["id"]})


async def aiokafka_relay(broker: str, source: str, target: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from dispatcher.fetch_wait import AdaptiveFetchWait

    bootstrap = broker.removeprefix("kafka://")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    # No consumer group: every partition at once, with no join to wait out (seconds on Tansu).
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS, enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    AdaptiveFetchWait(FETCH_MAX_WAIT_MS, FETCH_MAX_WAIT_CEILING_MS).install(consumer)
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        while True:
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                for message in messages:
                    await producer.send(target, key=message.key, value=relay_event(message.value))
    finally:
        await consumer.stop()
        await producer.stop()


def faust_relay(broker: str, source: str, target: str, port: int) -> None:
    """A bare faust agent with the dispatcher's transport and consumer settings (dispatcher/app.py):
    the same fetch wait, session and commit timings, raw serializers; no Redis, no validation."""
    from dispatcher.settings import Settings
    from dispatcher.transport import StreamApp, Worker

    app = StreamApp(f"relay-{source}", Settings(broker=broker), web_host="127.0.0.1", web_port=port)
    source_topic, target_topic = app.topic(source), app.topic(target)

    @app.agent(source_topic)
    async def relay(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            await target_topic.send(key=event.key, value=relay_event(event.value))

    @app.on_partitions_assigned.connect
    async def announce(sender: object, assigned: object, **kwargs: object) -> None:
        print("ready", flush=True)

    Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("aiokafka", "faust"))
    parser.add_argument("--broker", required=True, help="kafka://host:port")
    parser.add_argument("--in", dest="source", required=True, help="topic to consume")
    parser.add_argument("--out", dest="target", required=True, help="topic to produce to")
    parser.add_argument("--port", type=int, default=0, help="the faust worker's web port (faust binds one)")
    args = parser.parse_args(argv)
    if args.kind == "aiokafka":
        try:
            asyncio.run(aiokafka_relay(args.broker, args.source, args.target))
        except KeyboardInterrupt:
            pass
    else:
        if not args.port:
            parser.error("faust needs --port: a faust worker binds its web port even when unused")
        faust_relay(args.broker, args.source, args.target, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
