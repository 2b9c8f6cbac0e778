"""schemathesis against a live worker: every operation in /openapi.json called with data made from
the document, valid and not, alone and in sequences that follow the links it infers (a rep put,
then its presence and its leads; a lead posted, then read, closed, moved). No answer may be a 5xx;
every answer's status, content type and body must be the documented ones; bodies and path
parameters that break the document must be refused with a 4xx; a call without the token must get
401; a method the document does not name must get 405 with the allowed ones.

schemathesis's own pytest plugin cannot run lazily loaded schemas under pytest 9 (it sets
`request.node._nodeid`, which pytest 9 no longer has), so each operation is a test of its own
here, driven by schemathesis's strategies and checks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from dispatcher.openapi import PATHS
from tests import inputs

ADMIN_TOKEN = "fuzz-admin-token"
AUTHORIZATION = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance", "negative_data_rejection", "ignored_auth")
# Reproducible in CI, and well under a minute for the whole API on two shared cores.
BOUNDED = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
# The event streams never end: a client reads them for as long as it listens.
ENDLESS = ("/v1/live/stream", "/v1/reps/{rep_id}/events")
OPERATIONS = [(method.upper(), path) for path, item in PATHS.items() for method in item
              if method != "parameters" and path not in ENDLESS]
# Negative data needs something to break: a path or query parameter, or a body.
CASES = [(method, path, GenerationMode.POSITIVE) for method, path in OPERATIONS] + [
    (method, path, GenerationMode.NEGATIVE) for method, path in OPERATIONS
    if "{" in path or {"requestBody", "parameters"} & set(PATHS[path][method.lower()])
]


@pytest.fixture(scope="module")
def worker(worker_factory_module):
    return worker_factory_module(DISPATCHER_API_TOKENS=f"admin:{ADMIN_TOKEN}", DISPATCHER_ALLOW_ANONYMOUS="0")


@pytest.fixture(scope="module")
def api_schema(worker):
    config = schemathesis.Config.from_dict({
        "headers": AUTHORIZATION,
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{worker.http_port}/openapi.json", config=config)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[" ".join(case) for case in CASES])
def test_every_operation_answers_as_documented(api_schema, method, path, mode):
    @BOUNDED
    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    def answers_as_documented(case):
        case.call_and_validate()

    answers_as_documented()


def test_sequences_of_calls_answer_as_documented(api_schema):
    api_schema.exclude(path=list(ENDLESS)).as_state_machine().run(settings=settings(BOUNDED, stateful_step_count=6))


async def test_a_method_the_document_does_not_name_gets_405_with_the_allowed_ones(worker):
    async with aiohttp.ClientSession(headers=AUTHORIZATION) as session:
        for path, item in PATHS.items():
            concrete = path.replace("{lead_id}", "l1").replace("{rep_id}", "r1")
            async with session.request("TRACE", f"http://127.0.0.1:{worker.http_port}{concrete}") as response:
                assert response.status == 405, path
                allowed = set(response.headers["Allow"].split(", "))
                assert {method.upper() for method in item if method != "parameters"} <= allowed, path
                assert "TRACE is not allowed" in (await response.json())["error"]


def call(worker, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.http_port}{path}", data=body, method=method,
                                     headers={**AUTHORIZATION, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def test_a_lead_with_an_integer_beyond_64_bits_is_refused_in_words(worker):
    """It was accepted, then failed in encoding: a 500 over HTTP, a record replayed for ever from Kafka."""
    status, body = call(worker, "POST", "/v1/leads", b'{"id": "big-1", "attributes": {"account": 18446744073709551616}}')
    assert (status, json.loads(body)) == (400, {"error": (
        "invalid lead: attributes.account must be an integer that fits in signed 64 bits "
        "(-9223372036854775808 to 9223372036854775807); got 18446744073709551616")})
    assert call(worker, "GET", "/v1/leads/big-1", b"")[0] == 404


@pytest.mark.parametrize(("method", "path", "bodies"), [
    ("POST", "/v1/leads", inputs.hostile_leads()),
    ("PUT", "/v1/reps/{rep_id}", inputs.hostile_profiles()),
    ("POST", "/v1/reps/{rep_id}/presence", inputs.hostile_presence_changes),
    ("POST", "/v1/leads/{lead_id}/close", inputs.hostile_close_requests),
    ("POST", "/v1/leads/{lead_id}/reassign", inputs.hostile_reassign_requests),
], ids=lambda value: value if isinstance(value, str) else "")
def test_hostile_bodies_get_a_documented_answer_in_words(worker, method, path, bodies):
    documented = PATHS[path][method.lower()]["responses"]
    concrete = path.replace("{lead_id}", "fuzzed").replace("{rep_id}", "fuzzed")

    @settings(BOUNDED, max_examples=60)
    @given(raw=bodies)
    def answers(raw):
        status, body = call(worker, method, concrete, raw)
        assert str(status) in documented and status < 500, (status, body)
        if status >= 400:
            assert isinstance(json.loads(body)["error"], str)

    answers()
