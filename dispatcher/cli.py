"""`dispatcher` (also `python -m dispatcher`): dev, services, worker, api, token, routing check, check."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from dispatcher.access import ROLES, AccessError, Keyring, load_keyring, new_token
from dispatcher.routing import RoutingError, load_routing
from dispatcher.settings import Settings

if TYPE_CHECKING:
    from dispatcher.embedded import WorkerProcess


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


def _keyring(settings: Settings) -> Keyring:
    try:
        return load_keyring(settings)
    except AccessError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--http-port", type=int, default=None, help="HTTP port (default DISPATCHER_HTTP_PORT or 6066).")
@click.option("--demo/--no-demo", default=True, help="Load a demo roster and play simulated traffic.")
@click.option("--broker", default=None, help="Use this Kafka broker (kafka://host:port) instead of starting one.")
@click.option("--redis", "redis_url", default=None, help="Use this redis (redis://host:port/db) instead of starting one.")
@click.option("--api-processes", type=click.IntRange(0, 32), default=0, show_default=True,
              help="Also start this many api processes (`dispatcher api`), each on a free port, printing their URLs.")
def dev(http_port: int | None, demo: bool, broker: str | None, redis_url: str | None, api_processes: int) -> None:
    """Everything on loopback in the foreground: broker, redis, one worker, and the demo floor."""
    port = http_port or int(os.environ.get("DISPATCHER_HTTP_PORT", "6066"))
    settings = Settings()
    guarded = bool(_keyring(settings))
    workdir = Path(tempfile.mkdtemp(prefix="dispatcher-dev-"))
    # The demo puts a routing of its own (offers, a pool, SLAs) unless a routing file says what to use.
    demo_routing = settings.routing is None
    asyncio.run(_dev(port, demo, broker, redis_url, workdir, settings.api_tokens if guarded else None, demo_routing,
                     api_processes))


async def _dev(port: int, demo: bool, broker: str | None, redis_url: str | None, workdir: Path,
               api_tokens: list[str] | None, demo_routing: bool = True, api_processes: int = 0) -> None:
    """`api_tokens` is None when the dev stack runs open (no tokens configured)."""
    from dispatcher.demo import DemoPlan, run_demo
    from dispatcher.embedded import ApiProcess, EmbeddedStack, WorkerProcess, free_port

    stop = _wait_for_stop_signal()
    with contextlib.ExitStack() as cleanup:
        stack_env: dict[str, str] = {}
        if not (broker and redis_url):
            stack = EmbeddedStack(workdir)
            cleanup.callback(stack.stop)
            await asyncio.to_thread(stack.start)
            broker, redis_url = broker or stack.broker_url, redis_url or stack.redis_url
            stack_env = stack.worker_env
        env = {
            **stack_env,
            "DISPATCHER_BROKER": broker,
            "DISPATCHER_REDIS_URL": redis_url,
            "DISPATCHER_HTTP_PORT": str(port),
            "DISPATCHER_HTTP_BIND": "127.0.0.1",
            "DISPATCHER_ALLOW_ANONYMOUS": "1" if api_tokens is None else "0",
        }
        demo_token = None
        if demo and api_tokens is not None:
            # The demo plays every role at once (profiles, presence, leads, closes), so it gets an admin
            # token of its own, known only to this process, whatever roles the configured tokens have.
            demo_token = secrets.token_urlsafe(32)
            env["DISPATCHER_API_TOKENS"] = ",".join([*api_tokens, f"admin:{demo_token}"])
        worker = WorkerProcess(env, port, workdir / "worker.log")
        cleanup.callback(worker.terminate)
        await asyncio.to_thread(worker.start)
        click.echo(f"dispatcher ready on http://127.0.0.1:{port}")
        # A line of its own, so the ready line stays exactly what scripts wait for.
        click.echo(_addresses(broker, redis_url))
        for n in range(1, api_processes + 1):
            api_process = ApiProcess(env, free_port(), workdir / f"api{n}.log")
            cleanup.callback(api_process.terminate)
            await asyncio.to_thread(api_process.start)
            click.echo(f"api process {n} ready on http://127.0.0.1:{api_process.http_port}")
        if demo:
            demo_task = asyncio.create_task(run_demo(f"http://127.0.0.1:{port}", DemoPlan(own_routing=demo_routing), stop,
                                                     token=demo_token))
        await _keep_worker_running(worker, stop)
        if demo:
            await demo_task


# How often `dev` looks whether its worker is still there.
WORKER_WATCH_S = 1.0


async def _keep_worker_running(worker: WorkerProcess, stop: asyncio.Event) -> None:
    """A worker stops itself, on purpose, when a batch of leads fails (dispatcher/batches.py): a
    new one must take the batch up again. A deployment's supervisor restarts it; in `dev`, this does."""
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), WORKER_WATCH_S)
        if stop.is_set() or worker.process is None or worker.process.poll() is None:
            continue
        click.echo(f"the worker exited with code {worker.process.returncode} (log: {worker.log_path}); "
                   "starting a new one", err=True)
        await asyncio.to_thread(worker.start)


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
    _serve("all")


@main.command()
def api() -> None:
    """Only the HTTP API, beside workers: takes leads onto the leads topic and runs the HTTP steps in
    redis, but consumes nothing and runs no timers or relays. Several may run (each its own port)."""
    _serve("api")


def _serve(role: str) -> None:
    # The app reads its settings once, when dispatcher.app is first imported below.
    os.environ["DISPATCHER_PROCESS_ROLE"] = role
    settings = Settings()
    if not _keyring(settings) and not settings.allow_anonymous:
        raise click.ClickException(
            "no API tokens configured: set DISPATCHER_API_TOKENS (comma-separated) or DISPATCHER_API_TOKENS_FILE, "
            "or DISPATCHER_ALLOW_ANONYMOUS=1 to run open on purpose"
        )
    try:
        load_routing(settings.routing)
    except RoutingError as exc:
        raise click.ClickException(str(exc)) from None

    if settings.event_loop == "uvloop":
        import uvloop

        # Before the app is imported: it makes its loop from the policy in force.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from dispatcher import views  # noqa: F401 - importing registers the HTTP views
    from dispatcher.app import app

    # Importing registers what the role runs (dispatcher/app.py says why it is chosen here).
    if role == "api":
        from dispatcher import api_process  # noqa: F401
    else:
        from dispatcher import agents  # noqa: F401
    from dispatcher.transport import Worker

    Worker(app, loglevel=settings.log_level.upper(), quiet=True).execute_from_commandline()


@main.group()
def token() -> None:
    """API tokens for the tokens file (DISPATCHER_API_TOKENS_FILE)."""


@token.command("new")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--rep", "rep_id", default=None, help="The rep a rep token is bound to (required for --role rep).")
@click.option("--name", default=None, help="Who holds it; the lead history records e.g. supervisor:NAME.")
def token_new(role: str, rep_id: str | None, name: str | None) -> None:
    """Print a fresh random token once, and the line that admits it (its SHA-256 digest only)."""
    try:
        secret, line = new_token(role, rep_id, name)
    except AccessError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token: {secret}")
    click.echo(f"tokens file line: {line}")
    click.echo("The token is shown only now: hand it to its holder; the file keeps only its digest.", err=True)


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
        if len(exc.reasons) == 1:
            raise click.ClickException(str(exc)) from None
        raise click.ClickException("\n".join([f"{path}: {len(exc.reasons)} problems:",
                                               *(f"  - {reason}" for reason in exc.reasons)])) from None
    click.echo(f"{path}: ok — {len(checked.queues)} queues, {len(checked.spec.rules)} rules, "
               f"channels {', '.join(checked.channels)}, default queue {checked.default_queue}")
    for queue in checked.queues:
        click.echo(f"  {queue.name}: {queue.strategy}")


@main.command("check")
@click.option("--redis", "redis_url", default=None, help="The redis to check (default DISPATCHER_REDIS_URL).")
@click.option("--workspace", default=None, help="The workspace to check (default DISPATCHER_WORKSPACE).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
def check_command(redis_url: str | None, workspace: str | None, as_json: bool) -> None:
    """Verify every invariant of the contract against Redis; print each drift on its own line.

    Exit status 0 when nothing is broken (warnings are tolerated staleness), 1 on drift,
    2 when redis cannot be reached."""
    import orjson
    import pydantic
    import redis

    from dispatcher.check import CheckError, check_workspace

    overrides = {name: value for name, value in (("redis_url", redis_url), ("workspace", workspace)) if value}
    try:
        settings = Settings(**overrides)
    except pydantic.ValidationError as exc:
        fields = sorted({str(error["loc"][0]) for error in exc.errors()})
        words = {"workspace": "the workspace must be 1..32 letters, digits, '_' or '-'"}
        raise click.UsageError("; ".join(words.get(name, f"{name} is not valid") for name in fields)) from None
    try:
        fallback = load_routing(settings.routing)
        report = check_workspace(settings.redis_url, settings.workspace, fallback, settings.presence_ttl_s)
    except (RoutingError, CheckError) as exc:
        raise click.ClickException(str(exc)) from None
    except (redis.ConnectionError, redis.TimeoutError, ValueError) as exc:
        click.echo(f"cannot check redis at {settings.redis_url}: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(orjson.dumps(report.as_json()).decode())
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    sys.exit(main())
