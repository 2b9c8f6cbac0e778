"""Nobody let in: roles and rep-bound tokens against a real worker, 401 and 403 in words, the tokens
file of digests, `dispatcher token new`, tokens in URLs only where a browser needs them, the actor
in the lead's history, and every server bound to loopback in dev and tests."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from dispatcher.access import RULES, AccessError, load_keyring
from dispatcher.embedded import free_port
from dispatcher.settings import Settings
from tests.dispatcher.test_cli import DISPATCHER, children_of, open_leads, output_lines, read_line_containing, run
from tests.kafka_io import eventually, read_topic

ENV_TOKENS = {"admin": "admin-secret", "ingest": "ingest-secret", "supervisor": "sup-secret", "rep r1": "rep-one-secret"}
FILE_REP_TWO = "file-rep-two-secret"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_new(*args: str) -> tuple[str, str]:
    """(token, tokens-file line) as `dispatcher token new` prints them."""
    result = run("token", "new", *args)
    assert result.returncode == 0, result.stderr
    printed = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    return printed["token"], printed["tokens file line"]


@pytest.fixture(scope="module")
def minted() -> tuple[str, str]:
    return token_new("--role", "supervisor", "--name", "ana")


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory, minted: tuple[str, str]) -> Path:
    path = tmp_path_factory.mktemp("access") / "tokens"
    path.write_text(f"# supervisors\n{minted[1]}\n\nrep:r2:sha256:{sha256(FILE_REP_TWO)} bob  # r2's phone\n")
    return path


@pytest.fixture(scope="module")
def worker(worker_factory_module, tokens_file: Path):
    return worker_factory_module(
        DISPATCHER_API_TOKENS="admin-secret,ingest:ingest-secret,supervisor:sup-secret,rep:r1:rep-one-secret",
        DISPATCHER_API_TOKENS_FILE=str(tokens_file),
    )


@pytest.fixture(scope="module")
def tokens(minted: tuple[str, str]) -> dict[str, str]:
    return {**ENV_TOKENS, "supervisor ana": minted[0], "rep r2": FILE_REP_TWO}


class Caller:
    def __init__(self, session: aiohttp.ClientSession, port: int, tokens: dict[str, str]) -> None:
        self.session, self.base, self.tokens = session, f"http://127.0.0.1:{port}", tokens

    async def call(self, who: str | None, method: str, path: str, body: Any = None, *,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
        """(status, body: JSON decoded where it is JSON, the response); `who` names a token or None."""
        sent = {**({"Authorization": f"Bearer {self.tokens[who]}"} if who else {}), **(headers or {})}
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(method, self.base + path, data=data, headers=sent) as response:
            if response.content_type == "text/event-stream":
                return response.status, await response.content.readuntil(b"\n\n"), response
            raw = await response.read()
            return response.status, orjson.loads(raw) if response.content_type == "application/json" else raw, response


@pytest.fixture
async def caller(worker, tokens):
    async with aiohttp.ClientSession() as session:
        yield Caller(session, worker.http_port, tokens)


async def assigned_to(caller: Caller, lead_id: str) -> str | None:
    status, lead, _ = await caller.call("admin", "GET", f"/v1/leads/{lead_id}")
    return lead["rep_id"] if status == 200 and lead["status"] == "assigned" else None


@pytest.fixture(scope="module")
async def floor(worker, tokens) -> None:
    """r1 speaks Spanish and r2 French, so each of their leads lands where the cases expect it."""
    async with aiohttp.ClientSession() as session:
        caller = Caller(session, worker.http_port, tokens)
        for rep_id, skill in (("r1", "spanish"), ("r2", "french")):
            assert (await caller.call("admin", "PUT", f"/v1/reps/{rep_id}", {"capacity": 5, "skills": {skill: 5}}))[0] == 200
            assert (await caller.call("admin", "POST", f"/v1/reps/{rep_id}/presence", {"status": "online"}))[0] == 200
        leads = {"lead-of-r1": "spanish", "lead-of-r2": "french", "to-close": "spanish", "to-move": "french"}
        for lead_id, skill in leads.items():
            assert (await caller.call("admin", "POST", "/v1/leads", {"id": lead_id, "skills": [skill]}))[0] == 202
        for lead_id, skill in leads.items():
            assert await eventually(lambda lead_id=lead_id: assigned_to(caller, lead_id)) == {"spanish": "r1", "french": "r2"}[skill]


ONLINE = {"status": "online"}
CASES = [
    # who, method, path, body, status, words in the error
    ("ingest", "POST", "/v1/leads", {"id": "from-ingest"}, 202, None),
    ("ingest", "GET", "/v1/reps", None, 403, "this token's role ingest may not GET /v1/reps; that takes supervisor or admin"),
    ("ingest", "GET", "/v1/leads/lead-of-r1", None, 403, "role ingest may not"),
    ("ingest", "GET", "/", None, 403, "role ingest may not GET /"),
    ("rep r1", "POST", "/v1/reps/r1/presence", ONLINE, 200, None),
    ("rep r1", "GET", "/v1/reps/r1", None, 200, None),
    ("rep r1", "GET", "/v1/reps/r1/leads", None, 200, None),
    ("rep r1", "GET", "/v1/leads/lead-of-r1", None, 200, None),
    ("rep r1", "POST", "/v1/reps/r2/presence", ONLINE, 403, "bound to rep r1 and may not act for rep r2"),
    ("rep r1", "GET", "/v1/reps/r2", None, 403, "bound to rep r1"),
    ("rep r1", "GET", "/v1/reps/r2/leads", None, 403, "bound to rep r1"),
    ("rep r1", "GET", "/v1/leads/lead-of-r2", None, 403, "lead lead-of-r2 is not assigned or offered to it"),
    ("rep r1", "POST", "/v1/leads/lead-of-r2/close", {"outcome": "won"}, 403, "lead lead-of-r2 is not assigned or offered to it"),
    ("rep r1", "POST", "/v1/leads/lead-of-r2/accept", None, 403, "lead lead-of-r2 is not assigned or offered to it"),
    ("rep r1", "GET", "/v1/leads/no-such-lead", None, 403, "is not assigned or offered to it"),
    ("rep r1", "POST", "/v1/leads/lead-of-r1/reassign", {}, 403, "role rep may not POST /v1/leads/lead-of-r1/reassign"),
    ("rep r1", "GET", "/v1/reps", None, 403, "role rep may not GET /v1/reps"),
    ("rep r1", "PUT", "/v1/reps/r1", {"capacity": 9}, 403, "that takes admin"),
    ("rep r1", "POST", "/v1/leads", {"id": "from-rep"}, 403, "takes ingest or admin"),
    ("rep r1", "GET", "/v1/live", None, 403, "role rep may not GET /v1/live"),
    ("rep r2", "GET", "/v1/reps/r2/leads", None, 200, None),
    ("rep r2", "GET", "/v1/reps/r1", None, 403, "bound to rep r2 and may not act for rep r1"),
    ("supervisor", "GET", "/v1/reps", None, 200, None),
    ("supervisor", "GET", "/v1/leads/lead-of-r2", None, 200, None),
    ("supervisor", "POST", "/v1/reps/r2/presence", ONLINE, 200, None),
    ("supervisor", "GET", "/v1/live", None, 200, None),
    ("supervisor", "GET", "/v1/routing/history", None, 200, None),
    ("rep r1", "GET", "/v1/routing", None, 403, "role rep may not GET /v1/routing"),
    ("ingest", "GET", "/v1/routing/history", None, 403, "role ingest may not GET /v1/routing/history"),
    ("supervisor", "GET", "/v1/stats/fairness?window_s=600", None, 200, None),
    ("admin", "GET", "/v1/stats/fairness", None, 200, None),
    ("rep r1", "GET", "/v1/stats/fairness", None, 403, "role rep may not GET /v1/stats/fairness; that takes supervisor"),
    ("ingest", "GET", "/v1/stats/fairness", None, 403, "role ingest may not GET /v1/stats/fairness"),
    ("supervisor", "GET", "/", None, 200, None),
    ("supervisor", "PUT", "/v1/reps/r9", {"capacity": 1}, 403, "role supervisor may not PUT /v1/reps/r9; that takes admin"),
    ("supervisor", "POST", "/v1/leads", {"id": "from-supervisor"}, 403, "role supervisor may not POST /v1/leads"),
    ("supervisor ana", "GET", "/v1/reps", None, 200, None),
    ("admin", "PUT", "/v1/reps/r3", {"capacity": 1}, 200, None),
    ("admin", "POST", "/v1/leads", {"id": "from-admin"}, 202, None),
    ("admin", "GET", "/v1/live", None, 200, None),
    # Unrouted calls are answered as before, once the caller is known, whatever its role.
    ("rep r1", "GET", "/v1/nowhere", None, 404, "no such endpoint"),
    ("rep r1", "DELETE", "/v1/reps/r1", None, 405, "not allowed"),
    (None, "GET", "/v1/nowhere", None, 401, "missing bearer token"),
]


@pytest.mark.parametrize(("who", "method", "path", "body", "status", "words"), CASES)
async def test_each_role_reaches_what_it_may_and_is_refused_the_rest_in_words(
        floor, caller, who, method, path, body, status, words):
    code, answer, _ = await caller.call(who, method, path, body)
    assert code == status, answer
    if words:
        assert words in answer["error"], answer


async def test_without_a_known_token_the_answer_is_401_and_says_why(floor, caller, tokens_file):
    ana_digest = tokens_file.read_text().split("sha256:")[1].split()[0]
    cases = [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer not-a-token"}, "unknown bearer token"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "must be: Bearer <token>"),
        # The file holds digests: a digest is not a token, the token behind it is.
        ({"Authorization": f"Bearer {ana_digest}"}, "unknown bearer token"),
    ]
    for headers, words in cases:
        code, answer, response = await caller.call(None, "GET", "/v1/reps", headers=headers)
        assert (code, response.headers.get("WWW-Authenticate")) == (401, "Bearer") and words in answer["error"], answer
    assert (await caller.call("supervisor ana", "GET", "/v1/reps"))[0] == 200
    assert (await caller.call(None, "GET", "/v1/health"))[0] == 200
    assert (await caller.call(None, "GET", "/metrics"))[0] == 200
    assert (await caller.call(None, "GET", "/openapi.json"))[0] != 401, "the API's description is open"


async def test_a_token_in_the_url_is_taken_only_by_the_page_and_the_event_streams(floor, caller, tokens):
    def with_token(path: str, who: str) -> str:
        return f"{path}?access_token={tokens[who]}"

    code, page, _ = await caller.call(None, "GET", with_token("/", "supervisor"))
    assert code == 200 and b"<html" in page.lower()
    code, first_event, _ = await caller.call(None, "GET", with_token("/v1/live/stream", "supervisor"))
    assert code == 200 and first_event.startswith(b"data: {")
    # A rep's event stream takes the token too (an EventSource sends no header): its own only.
    code, opened, _ = await caller.call(None, "GET", with_token("/v1/reps/r1/events", "rep r1"))
    assert code == 200 and opened.startswith(b": connected")
    assert (await caller.call(None, "GET", with_token("/v1/reps/r2/events", "rep r1")))[0] == 403
    assert (await caller.call(None, "GET", with_token("/v1/live/stream", "ingest")))[0] == 403
    for method, path, who in (("GET", "/v1/live", "supervisor"), ("GET", "/v1/reps/r1", "rep r1"),
                              ("POST", "/v1/leads", "admin")):
        code, answer, _ = await caller.call(None, method, with_token(path, who), {"id": "via-url"} if method == "POST" else None)
        assert code == 401 and "accepted only by the live page and the event streams" in answer["error"], answer
    assert (await caller.call("admin", "GET", "/v1/leads/via-url"))[0] == 404, "the refused POST changed nothing"


async def test_closes_moves_and_presence_record_who_did_them(floor, caller, worker):
    code, closed, _ = await caller.call("rep r1", "POST", "/v1/leads/to-close/close", {"outcome": "won"})
    assert code == 200 and closed["history"][-1]["event"] == "closed" and closed["history"][-1]["by"] == "rep:r1"
    code, moved, _ = await caller.call("supervisor ana", "POST", "/v1/leads/to-move/reassign", {"rep_id": "r1"})
    assert code == 200 and moved["rep_id"] == "r1", moved
    assert moved["history"][-1]["by"] == "supervisor:ana", moved["history"]
    assert (await caller.call("rep r2", "POST", "/v1/leads/to-move/close", {"outcome": "lost"}))[0] == 403, "no longer r2's"

    assert (await caller.call("rep r2", "POST", "/v1/reps/r2/presence", {"status": "away"}))[0] == 200
    topic = worker.env["DISPATCHER_TOPIC_PREFIX"] + "rep-events"
    events = await read_topic(worker.env["DISPATCHER_BROKER"], topic, until=lambda records: any(
        event["type"] == "presence" and event["status"] == "away" for event in records))
    away = next(event for event in events if event["type"] == "presence" and event["status"] == "away")
    assert (away["rep_id"], away["by"]) == ("r2", "rep:r2:bob")


def listening(pids: set[int]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on, from /proc."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    found = set()
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4)))
            found.add((str(address), int(hex_port, 16)))
    return found


def test_a_worker_listens_where_DISPATCHER_HTTP_BIND_says(worker):
    # The factory binds 127.0.0.1; faust's own default would be every interface.
    sockets = listening({worker.process.pid})
    assert ("127.0.0.1", worker.http_port) in sockets and {address for address, _ in sockets} == {"127.0.0.1"}, sockets


def test_dev_listens_on_loopback_only_and_its_demo_runs_beside_tokens_without_admin(tmp_path):
    """The demo needs every right; with only a supervisor and an ingest token configured it still plays."""
    port = free_port()
    tokens = "supervisor:dev-sup,ingest:dev-ingest"
    process = subprocess.Popen([*DISPATCHER, "dev", "--http-port", str(port)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "DISPATCHER_API_TOKENS": tokens})
    try:
        read_line_containing(output_lines(process), "ready", timeout=90)
        deadline, assigned = time.monotonic() + 30, False
        while time.monotonic() < deadline and not assigned:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/reps", headers={"Authorization": "Bearer dev-sup"})
            reps = orjson.loads(urllib.request.urlopen(request).read())["reps"]
            assigned = len(reps) >= 20 and any(open_leads(rep["load"]) for rep in reps)
            time.sleep(0.5)
        assert assigned, "the demo's roster is in and leads are assigned"
        tree, frontier = {process.pid}, {process.pid}
        while frontier:
            frontier = set().union(*(children_of(pid) for pid in frontier)) - tree
            tree |= frontier
        sockets = listening(tree)
        assert len(sockets) >= 3 and {address for address, _ in sockets} == {"127.0.0.1"}, sockets
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()


def keyring_from(tmp_path: Path, file_text: str | None = None, env_tokens: str = ""):
    path = None
    if file_text is not None:
        path = tmp_path / "tokens"
        path.write_text(file_text)
    return load_keyring(Settings(api_tokens=env_tokens, api_tokens_file=path))


GOOD_LINE = f"supervisor:sha256:{sha256('x')}"
BAD_FILES = [
    ("# ok\n\nsupervisor:plain-token\n", "line 3", "no sha256 digest"),
    (f"{GOOD_LINE}\nboss:sha256:{sha256('y')}\n", "line 2", "unknown role 'boss'"),
    (f"{GOOD_LINE}\nadmin:sha256:{sha256('y')[:40]}\n", "line 2", "64 hex digits"),
    (f"supervisor:r1:sha256:{sha256('y')}\n", "line 1", "only rep tokens name a rep id"),
    (f"rep:sha256:{sha256('y')}\n", "line 1", "a rep token names its rep"),
    (f"rep:bad/id:sha256:{sha256('y')}\n", "line 1", "rep id 'bad/id'"),
    (f"{GOOD_LINE} ana smith\n", "line 1", "found 3 words"),
    (f"{GOOD_LINE} ana!\n", "line 1", "the name 'ana!'"),
    (f"{GOOD_LINE} ana\n{GOOD_LINE} bob\n", "line 2", "the same token is configured twice"),
]


@pytest.mark.parametrize(("text", "where", "words"), BAD_FILES)
def test_a_bad_tokens_file_line_is_refused_by_its_number(tmp_path, text, where, words):
    with pytest.raises(AccessError) as refused:
        keyring_from(tmp_path, text)
    assert f"{where} of the tokens file" in str(refused.value) and words in str(refused.value)


def test_bad_token_entries_are_refused_without_repeating_the_token(tmp_path):
    for entries, words in (("ok,rep:only-secret", "entry 2 of DISPATCHER_API_TOKENS: a rep token is written"),
                           ("supervisor:", "entry 1 of DISPATCHER_API_TOKENS: the token after 'supervisor:' is empty"),
                           ("same-secret,admin:same-secret", "configured twice (entry 1 of DISPATCHER_API_TOKENS and entry 2")):
        with pytest.raises(AccessError) as refused:
            keyring_from(tmp_path, env_tokens=entries)
        assert words in str(refused.value) and "secret" not in str(refused.value)
    with pytest.raises(AccessError, match="cannot read the tokens file .*missing: No such file"):
        load_keyring(Settings(api_tokens_file=tmp_path / "missing"))


def test_token_entries_name_their_role_and_a_bare_token_stays_admin(tmp_path):
    keyring = keyring_from(tmp_path, f"rep:r:7:sha256:{sha256('file-rep')} eve\n",
                           "legacy,ingest:i,rep:r:1:rep-secret,supervisor:s:with:colons")
    assert [keyring.identify(token).actor for token in ("legacy", "i", "rep-secret", "s:with:colons", "file-rep")] == \
        ["admin", "ingest", "rep:r:1", "supervisor", "rep:r:7:eve"]
    assert keyring.identify("rep:r:1:rep-secret") is None and keyring.identify("") is None


def test_the_worker_refuses_to_start_on_a_bad_tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"{GOOD_LINE}\nsupervisor:the-token-itself\n")
    result = run("worker", env={"DISPATCHER_API_TOKENS_FILE": str(path), "DISPATCHER_ALLOW_ANONYMOUS": "0"})
    assert result.returncode != 0 and "line 2 of the tokens file" in result.stderr, result.stderr


def test_token_new_checks_what_it_is_given():
    for args, words in ((("--role", "rep"), "a rep token needs --rep REP_ID"),
                        (("--role", "ingest", "--rep", "r1"), "only rep tokens take --rep"),
                        (("--role", "rep", "--rep", "a/b"), "rep id 'a/b'"),
                        (("--role", "admin", "--name", "two words"), "the name 'two words'")):
        result = run("token", "new", *args)
        assert result.returncode != 0 and words in result.stderr, result.stderr
    first, second = token_new("--role", "rep", "--rep", "r1"), token_new("--role", "rep", "--rep", "r1")
    assert first[0] != second[0] and first[1].startswith("rep:r1:sha256:") and first[0] not in first[1]


def test_every_route_the_worker_serves_has_a_decided_rule():
    """A route missing from the table is admin-only; this makes adding one a decision, not an accident."""
    from dispatcher import views  # noqa: F401 - importing registers the HTTP views
    from dispatcher.app import app
    from dispatcher.http import OPEN_PATHS

    served = {(route.method, route.resource.canonical) for route in app.web.web_app.router.routes()
              if route.method != "HEAD" and route.resource.canonical not in OPEN_PATHS}
    assert served and served <= set(RULES), served - set(RULES)
    assert set(RULES) <= served, f"rules for routes nobody serves: {set(RULES) - served}"
