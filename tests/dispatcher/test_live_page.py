"""The live supervisor page (`GET /`) in a real browser: Debian's chromium driven by Playwright.

Against a real worker with the demo floor playing, rep tiles and queue figures appear and move.
Against crafted pictures (the stream intercepted in the browser), the colours and warnings a
supervisor relies on show exactly where they should: over-loaded reps, SLA breaches, the token
passed through, a lost stream reconnected."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

import dispatcher
from dispatcher.demo import DemoPlan, run_demo

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGE = Path(dispatcher.__file__).parent / "static" / "index.html"

# A small, quick floor: a dozen reps, a few leads a second, leads closed after ~2 s.
FAST_FLOOR = DemoPlan(
    reps=12,
    teams=("inbound-sales", "support"),
    leads_per_second=5.0,
    burst_every_s=60.0,
    burst_length_s=5.0,
    mean_handle_time_s=2.0,
    heartbeat_every_s=(2.0, 4.0),
    away_probability_per_min=0.0,
    reps_taking_breaks=0,
    seed=7,
)

GREEN, AMBER, RED = "rgb(61, 220, 132)", "rgb(255, 176, 32)", "rgb(255, 77, 79)"

# What the page shows, read in one go.
READ_FIGURES = """() => {
  const value = (id) => document.getElementById(id).dataset.value;
  const queues = {};
  for (const tr of document.querySelectorAll('#queues tbody tr[data-queue]')) {
    const cell = (c) => tr.querySelector('td.' + c).textContent.trim();
    queues[tr.dataset.queue] = {waiting: cell('waiting'), oldest: cell('oldest'), ready: cell('ready'),
                                online: cell('online'), members: cell('members'), strategy: cell('strategy')};
  }
  const reps = {};
  for (const tile of document.querySelectorAll('#reps [data-rep]')) {
    reps[tile.dataset.rep] = {load: tile.querySelector('.load').textContent, level: tile.dataset.level,
                              status: tile.dataset.status, loadN: +tile.dataset.load, capN: +tile.dataset.capacity};
  }
  return {
    total: Number(value('assigned-total')), online: Number(value('reps-online')), rate: value('rate'),
    conn: document.getElementById('conn').dataset.state, queues, reps,
    recent: [...document.querySelectorAll('#recent li')].map((li) => li.dataset.lead),
    ratePath: document.querySelector('#chart-rate path.line')?.getAttribute('d') || '',
  };
}"""


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Debian's chromium under Playwright; a missing browser fails the test, saying how to get it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the live page tests drive Debian's chromium. "
            "Install it with `make system-packages` (apt-get install chromium).",
            pytrace=False,
        )
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `pip install -e '.[dev]'` (never `playwright install`)",
                    pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Any, **viewport: int) -> tuple[Any, list[str], list[str]]:
    """A page, the JS errors it raises and every URL it requests."""
    page = await browser.new_page(viewport={"width": 1440, "height": 900, **viewport})
    errors: list[str] = []
    requested: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda request: requested.append(request.url))
    return page, errors, requested


async def until(page: Any, check, timeout_s: float, what: str) -> dict[str, Any]:
    """Read the page's figures every half second until `check(figures)` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        figures = await page.evaluate(READ_FIGURES)
        if check(figures):
            return figures
        if time.monotonic() > deadline:
            raise AssertionError(f"the page never showed {what} within {timeout_s:.0f} s; it shows {figures}")
        await asyncio.sleep(0.5)


def expected_level(load: int, capacity: int) -> str:
    used = load / capacity if capacity else (float("inf") if load else 0.0)
    return "over" if used > 1 else "full" if used >= 1 else "warn" if used >= 0.75 else "ok"


# --- a real worker, a real floor -----------------------------------------------------------------

async def test_the_live_page_shows_the_floor_and_follows_it(worker_factory, tmp_path):
    async with chromium() as browser:
        await _the_live_page_shows_the_floor_and_follows_it(browser, worker_factory(), tmp_path)


async def _the_live_page_shows_the_floor_and_follows_it(browser, worker, tmp_path):
    base = f"http://127.0.0.1:{worker.http_port}"
    stop = asyncio.Event()
    demo = asyncio.create_task(run_demo(base, FAST_FLOOR, stop))
    page, errors, requested = await new_page(browser)
    try:
        await page.goto(base + "/")
        assert await page.title() == "Lead dispatcher · live floor"
        first = await until(
            page,
            lambda f: f["conn"] == "live" and len(f["reps"]) == FAST_FLOOR.reps and f["total"] > 0 and f["recent"],
            45, "all 12 reps and a first assignment",
        )
        default = first["queues"]["default"]
        assert default["members"] == "12" and default["strategy"] == "load_aware", default
        assert int(default["online"]) >= 1 and default["waiting"].isdigit(), default

        # Over a few seconds, the floor moves and the page with it.
        moved = await until(
            page,
            lambda f: f["total"] >= first["total"] + 5
            and f["recent"][0] != first["recent"][0]
            and any(f["reps"].get(rep, tile)["load"] != tile["load"] for rep, tile in first["reps"].items()),
            30, "assignments, a new newest assignment and a rep's load changing",
        )
        assert len(moved["recent"]) > len(first["recent"]) or set(moved["recent"]) != set(first["recent"])
        assert moved["rate"] and float(moved["rate"]) > 0, moved["rate"]
        await until(page, lambda f: f["ratePath"].count("L") >= 3, 10, "a line in the assignments-per-second chart")
        for rep, tile in moved["reps"].items():
            assert tile["load"] == f"{tile['loadN']} / {tile['capN']}", tile
            assert tile["level"] in (expected_level(tile["loadN"], tile["capN"]), "over"), (rep, tile)
            assert tile["status"] in ("online", "away", "offline"), tile

        # The page never claims more than the dispatcher has done.
        async with aiohttp.ClientSession() as session, session.get(base + "/v1/live") as response:
            picture = await response.json()
        assert moved["total"] <= picture["assigned_total"]

        await page.screenshot(path=str(tmp_path / "live-page.png"), full_page=True)
        assert (tmp_path / "live-page.png").stat().st_size > 10_000
    finally:
        stop.set()
        await demo
        await page.close()
    assert not errors, errors
    assert all(url.startswith(base + "/") for url in requested), "the page fetches nothing from elsewhere"
    print(f"screenshot: {tmp_path / 'live-page.png'}")


async def test_with_tokens_the_page_passes_its_access_token_to_the_stream(worker_factory):
    async with chromium() as browser:
        worker = worker_factory(DISPATCHER_API_TOKENS="page-secret")
        base = f"http://127.0.0.1:{worker.http_port}"
        page, errors, requested = await new_page(browser)
        await _live_with_token(page, base, requested)
    assert not errors, errors


async def _live_with_token(page, base, requested):
    try:
        await page.goto(base + "/?access_token=page-secret&wall=1")
        figures = await until(page, lambda f: f["conn"] == "live" and "default" in f["queues"], 20,
                              "a live connection with the token")
        assert figures["queues"]["default"]["members"] == "0"
        streams = [url for url in requested if "/v1/live/stream" in url]
        assert streams and parse_qs(urlsplit(streams[0]).query) == {"access_token": ["page-secret"]}
    finally:
        await page.close()


# --- crafted pictures: every colour and warning where it belongs --------------------------------

def rep(rep_id: str, status: str, load: Any, capacity: Any, teams: tuple[str, ...] = ("support",)) -> dict:
    return {"id": rep_id, "name": rep_id.replace("-", " ").title(), "status": status, "load": load,
            "capacity": capacity, "utilization": 0, "teams": list(teams)}


def assignment(lead_id: str, rep_id: str, at: str, latency_ms: int, queue: str = "general") -> dict:
    return {"lead_id": lead_id, "rep_id": rep_id, "queue": queue, "strategy": "load_aware",
            "reason": f"load-aware: least loaded eligible rep ({lead_id})", "assigned_at": at,
            "reassigned": False, "latency_ms": latency_ms}


REPS = [
    {**rep("olga-over", "online", 5, 4), "breaches": 40},
    rep("chen-channel", "online", {"chat": 3, "call": 0}, {"chat": 2, "call": 1}, ("support", "enterprise")),
    rep("fay-full", "online", 4, 4),
    rep("will-warn", "online", 3, 4),
    rep("ada-away", "away", 1, 4),
    rep("otto-offline", "offline", 0, 3),
    {**rep("nina-night", "away", 2, 2, ("night-shift",)), "on_shift": False},
]
QUEUES = [
    {"name": "general", "strategy": "load_aware", "members": 6, "waiting": 0, "oldest_wait_s": 0.0, "online": 4, "ready": 1,
     "offered": 3, "pooled": 0, "breaches": 0},
    {"name": "spanish", "strategy": "load_aware", "members": 2, "waiting": 3, "oldest_wait_s": 45.2, "online": 2, "ready": 0,
     "offered": 0, "pooled": 2, "breaches": 5},
    {"name": "promo", "strategy": "online_now", "members": 6, "waiting": 7, "oldest_wait_s": 130.5, "online": 4, "ready": 0,
     "offered": 0, "pooled": 0, "breaches": 40},
]
# The server's team figures for REPS: online reps' open leads over their capacity; night-shift has
# open leads (an away rep keeps them) and no one online.
TEAMS = [
    {"name": "enterprise", "reps": {"online": 1, "away": 0, "offline": 0}, "load": {"online": 3, "away": 0, "offline": 0},
     "capacity_online": 3, "utilization": 1.0},
    {"name": "night-shift", "reps": {"online": 0, "away": 1, "offline": 0}, "load": {"online": 0, "away": 2, "offline": 0},
     "capacity_online": 0, "utilization": None},
    {"name": "support", "reps": {"online": 4, "away": 1, "offline": 1}, "load": {"online": 15, "away": 1, "offline": 0},
     "capacity_online": 15, "utilization": 1.0},
]
# The server's fairness figures per queue over its window: general even, spanish one-sided, promo
# with more members than the panel names.
FAIRNESS = [
    {"queue": "general", "strategy": "load_aware", "window_s": 3600, "assignments": 90,
     "reps": {"fay-full": 30, "olga-over": 30, "will-warn": 30}, "spread": 0, "gini": 0.0},
    {"queue": "spanish", "strategy": "skills", "window_s": 3600, "assignments": 12,
     "reps": {"chen-channel": 12, "ada-away": 0}, "spread": 12, "gini": 0.5},
    {"queue": "promo", "strategy": "online_now", "window_s": 3600, "assignments": 40,
     "reps": {f"r{n:02d}": n % 5 for n in range(15)}, "spread": 4, "gini": 0.3167},
]
FIRST = {
    "at": "2026-03-01T10:00:00.000Z", "assigned_total": 100, "reps_total": 7,
    "reps_by_status": {"online": 4, "away": 2, "offline": 1}, "reps": REPS, "queues": QUEUES, "teams": TEAMS,
    "fairness": FAIRNESS, "breaches_total": 45,
    "recent": [assignment("lead-2", "will-warn", "2026-03-01T09:59:59.900Z", 4),
               assignment("lead-1", "fay-full", "2026-03-01T09:59:58.000Z", 10)],
}
# A second later: two breaches in spanish, both will-warn's (counts since the workspace began).
SECOND = {
    **FIRST, "at": "2026-03-01T10:00:01.000Z", "assigned_total": 130,
    "queues": [QUEUES[0], {**QUEUES[1], "breaches": 7}, QUEUES[2]], "breaches_total": 47,
    "reps": [{**r, "breaches": r.get("breaches", 0) + (2 if r["id"] == "will-warn" else 0)} for r in REPS],
    "recent": [assignment("lead-3", "olga-over", "2026-03-01T10:00:00.500Z", 20, "promo"), *FIRST["recent"]],
}


async def crafted_page(browser: Any, query: str = "", *, status: int = 200):
    """The page at a made-up origin whose stream sends FIRST and SECOND, then ends (as a dropped
    connection does); `status` 401 answers every API call as a server with other tokens would."""
    page, errors, requested = await new_page(browser)
    stream_calls: list[str] = []

    async def answer(route: Any) -> None:
        path = urlsplit(route.request.url).path
        if path == "/":
            await route.fulfill(status=200, content_type="text/html", body=PAGE.read_text())
        elif status != 200 and path.startswith("/v1/"):
            await route.fulfill(status=status, content_type="application/json", body='{"error": "missing token"}')
        elif path == "/v1/live/stream":
            stream_calls.append(route.request.url)
            body = "".join(f"data: {json.dumps(picture)}\n\n" for picture in (FIRST, SECOND))
            await route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)
        elif path == "/v1/live":
            await route.fulfill(status=200, content_type="application/json", body=json.dumps(SECOND))
        else:
            await route.fulfill(status=404, content_type="application/json", body='{"error": "no such endpoint"}')

    await page.route("**/*", answer)
    await page.goto("http://dispatcher.test/" + query)
    return page, errors, requested, stream_calls


async def computed(page: Any, selector: str, prop: str) -> str:
    return await page.eval_on_selector(selector, f"node => getComputedStyle(node).{prop}")


async def test_overload_sla_breaches_and_per_channel_load_stand_out():
    async with chromium() as browser:
        page, errors, requested, streams = await crafted_page(browser)
        await _colours_and_warnings(page, streams)
    assert not errors, errors
    assert all(url.startswith("http://dispatcher.test/") for url in requested)


async def _colours_and_warnings(page, streams):
    try:
        await page.wait_for_selector('#recent li[data-lead="lead-3"]')
        # Reps: the level, the numbers, the bar colour, the status dot, the per-channel tooltip.
        levels = {"olga-over": "over", "chen-channel": "over", "fay-full": "full", "will-warn": "warn",
                  "ada-away": "ok", "otto-offline": "ok"}
        for rep_id, level in levels.items():
            assert await page.get_attribute(f'#reps [data-rep="{rep_id}"]', "data-level") == level, rep_id
        assert await page.text_content('#reps [data-rep="olga-over"] .load') == "5 / 4"
        assert await page.text_content('#reps [data-rep="chen-channel"] .load') == "3 / 3"
        tooltip = await page.get_attribute('#reps [data-rep="chen-channel"]', "title")
        assert "chat: 3 / 2  OVER" in tooltip and "call: 0 / 1" in tooltip, tooltip
        bar = '#reps [data-rep="{}"] .bar i'
        assert await computed(page, bar.format("olga-over"), "backgroundColor") == RED
        assert await computed(page, bar.format("fay-full"), "backgroundColor") == RED
        assert await computed(page, bar.format("will-warn"), "backgroundColor") == AMBER
        assert await computed(page, bar.format("ada-away"), "backgroundColor") == GREEN
        assert await computed(page, '#reps [data-rep="olga-over"]', "borderTopColor") == RED, "over-load is framed"
        assert await computed(page, '#reps [data-rep="fay-full"]', "borderTopColor") != RED
        dot = '#reps [data-rep="{}"] .dot'
        assert await computed(page, dot.format("will-warn"), "backgroundColor") == GREEN
        assert await computed(page, dot.format("ada-away"), "backgroundColor") == AMBER
        assert await computed(page, dot.format("otto-offline"), "backgroundColor") == "rgb(107, 119, 135)"
        # Off shift (nina) is its own marker: a hollow dot and a tag, whatever the status says.
        assert await computed(page, dot.format("nina-night"), "backgroundColor") == "rgba(0, 0, 0, 0)"
        assert await page.is_visible('#reps [data-rep="nina-night"] .shift')
        assert not await page.is_visible('#reps [data-rep="ada-away"] .shift')
        assert "off shift" in await page.get_attribute('#reps [data-rep="nina-night"]', "title")

        # Queues: amber past 30 s, red (and a "waiting > 2 min" badge) past 120 s, calm when nobody waits.
        row = '#queues tr[data-queue="{}"]'
        assert await page.get_attribute(row.format("general"), "data-level") == "idle"
        assert await page.get_attribute(row.format("spanish"), "data-level") == "warn"
        assert await page.get_attribute(row.format("promo"), "data-level") == "breach"
        assert await page.text_content(row.format("promo") + " td.oldest") == "131 s"
        assert await page.text_content(row.format("promo") + " td.waiting") == "7"
        assert await computed(page, row.format("spanish") + " td.oldest", "color") == AMBER
        assert await computed(page, row.format("promo") + " td.oldest", "color") == RED
        assert await page.text_content(row.format("promo") + " .long-wait") == "waiting > 2 min"
        assert await page.is_visible(row.format("promo") + " .long-wait")
        assert not await page.is_visible(row.format("spanish") + " .long-wait")
        assert await page.get_attribute("#oldest-kpi", "data-level") == "breach"
        assert await page.get_attribute("#waiting-total", "data-value") == "10"

        # Header: totals, and assignments per second from successive assigned_total values.
        assert await page.text_content("#assigned-total") == "130"
        assert float(await page.get_attribute("#rate", "data-value")) == pytest.approx(30.0)
        assert [await page.text_content(f"#reps-{s}") for s in ("online", "away", "offline")] == ["4", "2", "1"]
        # Latency: the median of what is new since the previous picture (20 ms), and of the first
        # picture's last second (4 ms): over both, 4 and 20.
        assert await page.text_content("#lat-now-p50") == "20 ms"
        assert await page.get_attribute("#latency-p50", "data-value") == "12"

        # The last assignments: newest first, with rep, queue, strategy and the reason in words.
        assert await page.eval_on_selector_all("#recent li", "lis => lis.map(li => li.dataset.lead)") == [
            "lead-3", "lead-2", "lead-1"]
        newest = await page.text_content("#recent li:first-child")
        assert "Olga Over" in newest and "promo" in newest and "load_aware" in newest
        assert "least loaded eligible rep (lead-3)" in newest

        # The stream ended: the page reconnects by itself, without a token it was never given.
        deadline = time.monotonic() + 10
        while len(streams) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert len(streams) >= 2, "the page reconnects after the stream ends"
        assert all("access_token" not in url for url in streams)
    finally:
        await page.close()


async def test_offers_pool_and_breaches_since_the_page_opened_show_per_queue_and_rep():
    async with chromium() as browser:
        page, errors, _, _ = await crafted_page(browser)
        row = '#queues tr[data-queue="{}"] td.{}'
        try:
            await page.wait_for_selector('#recent li[data-lead="lead-3"]')
            figures = {queue: [await page.text_content(row.format(queue, column)) for column in ("offered", "pooled", "breaches")]
                       for queue in ("general", "spanish", "promo")}
            # The workspace's counts before the page opened (promo's 40) are not this page's breaches.
            assert figures == {"general": ["3", "0", "0"], "spanish": ["0", "2", "2"], "promo": ["0", "0", "0"]}
            assert await computed(page, row.format("spanish", "breaches"), "color") == RED
            assert await computed(page, row.format("spanish", "pooled"), "color") == AMBER
            assert "7 since the workspace began" in await page.get_attribute(row.format("spanish", "breaches"), "title")
            assert await page.text_content("#breaches-total") == "2"
            assert await page.get_attribute("#breaches-kpi", "data-level") == "breach"
            tile = '#reps [data-rep="{}"]'
            assert await page.text_content(tile.format("will-warn") + " .breaches") == "2 missed"
            assert await page.is_visible(tile.format("will-warn") + " .breaches")
            assert not await page.is_visible(tile.format("olga-over") + " .breaches")
            assert "2 first contacts missed" in await page.get_attribute(tile.format("will-warn"), "title")
        finally:
            await page.close()
    assert not errors, errors


async def test_a_team_with_no_one_online_says_so_instead_of_a_percentage():
    async with chromium() as browser:
        page, errors, _, _ = await crafted_page(browser, "?team=night-shift")
        await _team_figures(page)
    assert not errors, errors


async def _team_figures(page):
    try:
        figure = "#team-figure"
        await page.wait_for_function("document.getElementById('team-figure').textContent !== ''")
        assert await page.text_content(figure) == "night-shift: no one online · 2 held by reps not online"
        assert await computed(page, figure, "color") == AMBER
        options = await page.eval_on_selector_all("#team-filter option", "os => os.map(o => [o.value, o.textContent])")
        assert options == [["", "all"], ["enterprise", "enterprise · 100%"], ["night-shift", "night-shift · no one online"],
                           ["support", "support · 100%"]]
        await page.select_option("#team-filter", "support")
        assert await page.text_content(figure) == "support: 15 of 15 in use (100%) · 1 held by reps not online"
        assert await computed(page, figure, "color") != AMBER
        page_text = await page.inner_text("body")
        assert "Infinity" not in page_text and "NaN" not in page_text
    finally:
        await page.close()


async def test_the_fairness_panel_shows_each_queue_and_marks_uneven_ones():
    async with chromium() as browser:
        page, errors, _, _ = await crafted_page(browser)
        try:
            await page.wait_for_selector('#fairness tr[data-queue="promo"]')
            rows = await page.eval_on_selector_all("#fairness tbody tr", """trs => trs.map(tr => [tr.dataset.queue,
                ...['assignments', 'spread', 'gini'].map(c => tr.querySelector('td.' + c).textContent),
                tr.querySelector('td.gini').dataset.level,
                [...tr.querySelectorAll('.fair-rep')].map(s => s.textContent)])""")
            assert rows[0] == ["general", "90", "0", "0.00", "ok", ["fay-full 30", "olga-over 30", "will-warn 30"]]
            assert rows[1] == ["spanish", "12", "12", "0.50", "breach", ["chen-channel 12", "ada-away 0"]]
            queue, assignments, spread, gini, level, reps = rows[2]
            assert (queue, assignments, spread, gini, level) == ("promo", "40", "4", "0.32", "warn")
            assert reps[:3] == ["r04 4", "r09 4", "r14 4"] and reps[-1] == "+3 more" and len(reps) == 13
            row = '#fairness tr[data-queue="{}"] td.gini'
            assert await computed(page, row.format("spanish"), "color") == RED
            assert await computed(page, row.format("promo"), "color") == AMBER
            assert await page.text_content("#fairness-meta") == "last 1 h · Gini amber from 0.25, red from 0.5"
        finally:
            await page.close()
    assert not errors, errors


async def test_the_access_token_in_the_page_url_goes_to_the_stream():
    async with chromium() as browser:
        page, errors, _, streams = await crafted_page(browser, "?access_token=s3cr%2Ft&wall=1")
        await page.wait_for_selector('#recent li[data-lead="lead-3"]')
        assert parse_qs(urlsplit(streams[0]).query) == {"access_token": ["s3cr/t"]}
        assert await page.eval_on_selector("html", "node => node.classList.contains('wall')")
    assert not errors, errors


@pytest.mark.parametrize(("status", "words"), [(401, "token refused"), (403, "may not watch the floor")])
async def test_a_refused_token_is_said_in_words(status, words):
    async with chromium() as browser:
        page, _, requested, _ = await crafted_page(browser, "?access_token=old", status=status)
        await page.wait_for_selector("#conn[data-state=unauthorized]", timeout=10_000)
        assert words in await page.text_content("#conn")
        # Outside the page and the stream a token goes in the header: the API refuses it in a URL.
        assert not [url for url in requested if "access_token" in url and urlsplit(url).path not in ("/", "/v1/live/stream")]
