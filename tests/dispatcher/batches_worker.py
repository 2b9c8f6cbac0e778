"""A faust worker that decides leads as `assign_leads` does (dispatcher/agents.py: NaturalBatches
over a noack stream, the dispatcher's transport, consumer group and commit timings), with a decide
step the test controls instead of Redis, for tests/dispatcher/test_batches.py:

    python -m tests.dispatcher.batches_worker --broker kafka://H:P --topic T --group G --port P
        --notes FILE [--hold ID] [--fail ID] [--acks as-completed]

Each record's value is a lead id. The worker appends to FILE `ready` once it has its partitions,
`decided ID` for each lead of a batch it decides, `holding ID` when a batch holds lead --hold (that
batch then never finishes) and `failing ID` when a batch holding --fail raises. `--acks
as-completed` acknowledges each batch as soon as it finishes, as NaturalBatches did before
OffsetOrderAcks, so a test can show the hole that ordering closes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from faust.types import EventT

from dispatcher.batches import Ack, NaturalBatches


class AckedAsCompleted:
    def __init__(self, ack: Ack) -> None:
        self._ack = ack

    def arrived(self, event: EventT) -> None:
        pass

    async def finished(self, events: Sequence[EventT]) -> None:
        for event in events:
            await self._ack(event)


class BatchesAckedAsCompleted(NaturalBatches):
    Acks = AckedAsCompleted  # type: ignore[assignment]


def run(args: argparse.Namespace) -> None:
    from dispatcher.settings import Settings
    from dispatcher.transport import StreamApp, Worker

    settings = Settings(
        broker=args.broker, topic_partitions=args.partitions, commit_interval_s=0.2,
        broker_session_timeout_s=3, broker_rebalance_timeout_s=3, data_dir=args.notes.parent,
    )
    app = StreamApp(args.group, settings, web_host="127.0.0.1", web_port=args.port)
    batches_kind = BatchesAckedAsCompleted if args.acks == "as-completed" else NaturalBatches
    notes = args.notes.open("a", buffering=1)

    async def decide(events: Sequence[EventT]) -> list[asyncio.Future]:
        lead_ids = [event.value.decode() for event in events]
        if args.hold in lead_ids:
            notes.write(f"holding {args.hold}\n")
            await asyncio.Event().wait()
        if args.fail in lead_ids:
            notes.write(f"failing {args.fail}\n")
            raise RuntimeError(f"lead {args.fail} cannot be decided")
        notes.writelines(f"decided {lead_id}\n" for lead_id in lead_ids)
        return []

    @app.agent(app.topic(args.topic))
    async def decide_leads(stream):  # type: ignore[no-untyped-def]
        batches = batches_kind(stream, settings.batch_max, decide)
        async for event in stream.noack().events():
            await batches.add(event)

    @app.on_partitions_assigned.connect
    async def announce(sender: object, assigned: object, **kwargs: object) -> None:
        notes.write("ready\n")

    Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--port", type=int, required=True, help="faust binds a web port even when unused")
    parser.add_argument("--notes", type=Path, required=True)
    parser.add_argument("--hold", default=None)
    parser.add_argument("--fail", default=None)
    parser.add_argument("--acks", choices=("in-order", "as-completed"), default="in-order")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
