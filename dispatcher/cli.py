"""`dispatcher` (also `python -m dispatcher`): dev, services, worker, routing check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

import click

from dispatcher.routing import RoutingError, load_routing


@click.group()
def main() -> None:
    """Real-time lead dispatcher: routes leads from Kafka to reps, one atomic Redis step each."""


def _wait_for_stop_signal() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _addresses(broker: str, redis_url: str) -> str:
    return f"broker={broker} redis={redis_url}"


@main.command()
@click.option("--http-port", type=int, default=None, help="HTTP port (default DISPATCHER_HTTP_PORT or 6066).")
@click.option("--demo/--no-demo", default=True, help="Load a demo roster and play simulated traffic.")
@click.option("--broker", default=None, help="Use this Kafka broker (kafka://host:port) instead of starting one.")
@click.option("--redis", "redis_url", default=None, help="Use this redis (redis://host:port/db) instead of starting one.")
def dev(http_port: int | None, demo: bool, broker: str | None, redis_url: str | None) -> None:
    """Everything on loopback in the foreground: broker, redis, one worker, and the demo floor."""
    port = http_port or int(os.environ.get("DISPATCHER_HTTP_PORT", "6066"))
    workdir = Path(tempfile.mkdtemp(prefix="dispatcher-dev-"))
    asyncio.run(_dev(port, demo, broker, redis_url, workdir))


async def _dev(port: int, demo: bool, broker: str | None, redis_url: str | None, workdir: Path) -> None:
    from dispatcher.demo import DemoPlan, run_demo
    from dispatcher.embedded import EmbeddedStack, WorkerProcess

    stop = _wait_for_stop_signal()
    with contextlib.ExitStack() as cleanup:
        if not (broker and redis_url):
            stack = EmbeddedStack(workdir)
            cleanup.callback(stack.stop)
            await asyncio.to_thread(stack.start)
            broker, redis_url = broker or stack.broker_url, redis_url or stack.redis_url
        tokens = os.environ.get("DISPATCHER_API_TOKENS", "")
        env = {
            "DISPATCHER_BROKER": broker,
            "DISPATCHER_REDIS_URL": redis_url,
            "DISPATCHER_HTTP_PORT": str(port),
            "DISPATCHER_HTTP_HOST": "127.0.0.1",
            "DISPATCHER_ALLOW_ANONYMOUS": "0" if tokens else "1",
        }
        worker = WorkerProcess(env, port, workdir / "worker.log")
        cleanup.callback(worker.terminate)
        await asyncio.to_thread(worker.start)
        click.echo(f"dispatcher ready on http://127.0.0.1:{port}")
        # A line of its own, so the ready line stays exactly what scripts wait for.
        click.echo(_addresses(broker, redis_url))
        if demo:
            token = tokens.split(",")[0].strip() or None
            demo_task = asyncio.create_task(run_demo(f"http://127.0.0.1:{port}", DemoPlan(), stop, token=token))
        await stop.wait()
        if demo:
            await demo_task


@main.command()
def services() -> None:
    """Only the embedded broker and redis, in the foreground, until Ctrl-C."""
    from dispatcher.embedded import EmbeddedStack

    stack = EmbeddedStack(Path(tempfile.mkdtemp(prefix="dispatcher-services-")))

    async def run() -> None:
        stop = _wait_for_stop_signal()
        try:
            await asyncio.to_thread(stack.start)
            click.echo(_addresses(stack.broker_url, stack.redis_url))
            await stop.wait()
        finally:
            stack.stop()

    asyncio.run(run())


@main.command()
def worker() -> None:
    """One worker (stream processor + HTTP server) against DISPATCHER_BROKER and DISPATCHER_REDIS_URL."""
    from dispatcher.settings import Settings

    settings = Settings()
    if not settings.api_tokens and not settings.allow_anonymous:
        raise click.ClickException(
            "no API tokens configured: set DISPATCHER_API_TOKENS (comma-separated), "
            "or DISPATCHER_ALLOW_ANONYMOUS=1 to run open on purpose"
        )
    try:
        load_routing(settings.routing)
    except RoutingError as exc:
        raise click.ClickException(str(exc)) from None

    import faust

    from dispatcher import agents, views  # noqa: F401 - importing registers the agent and the HTTP views
    from dispatcher.app import app

    faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


@main.group()
def routing() -> None:
    """Work with routing files."""


@routing.command("check")
@click.argument("path", type=click.Path(path_type=Path))
def routing_check(path: Path) -> None:
    """Check a routing file as a worker would, without starting anything."""
    try:
        checked = load_routing(path)
    except RoutingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path}: ok — {len(checked.queues)} queues, {len(checked.spec.rules)} rules, "
               f"channels {', '.join(checked.channels)}, default queue {checked.default_queue}")
    for queue in checked.queues:
        click.echo(f"  {queue.name}: {queue.strategy}")


if __name__ == "__main__":
    sys.exit(main())
