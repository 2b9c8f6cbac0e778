"""Input shapes: defaults filled in, every kind of bad input refused with what is wrong."""

from __future__ import annotations

import pytest

from dispatcher.models import BadInput, check_id, routable_lead, usable_profile
from dispatcher.routing import load_routing

ROUTING = load_routing(None)


def lead(raw: bytes, max_bytes: int = 64 * 1024) -> dict:
    return routable_lead(raw, ROUTING, max_bytes=max_bytes)


def test_a_minimal_lead_gets_its_defaults():
    assert lead(b'{"id": "a:1"}') == {"id": "a:1", "channel": "web", "priority": 0}
    full = lead(b'{"id": "x", "channel": "chat", "priority": 9, "value": 10, "skills": ["es"], '
                b'"customer_id": "c", "attributes": {"region": "east", "tags": ["a", 1, true]}}')
    assert full["attributes"]["tags"] == ["a", 1, True] and full["value"] == 10.0


@pytest.mark.parametrize(("raw", "kind", "words"), [
    (b"{oops", "malformed_json", "malformed JSON"),
    (b'{"id": "x", "priority": "high"}', "invalid", "Expected `int`, got `str` - at `$.priority`"),
    (b'{"id": "x", "priority": true}', "invalid", "$.priority"),
    (b'{"id": "x", "value": -1}', "invalid", "$.value"),
    (b'{"id": "x", "skills": "spanish"}', "invalid", "$.skills"),
    (b'{"id": "x", "attributes": {"a": {"b": 1}}}', "invalid", "$.attributes"),
    (b'{"id": "' + b"x" * 129 + b'"}', "invalid", "$.id"),
    (b'{"id": "has space"}', "invalid", "$.id"),
    (b'{"priority": 1}', "invalid", "missing required field `id`"),
    (b'{"id": "x", "priorty": 1}', "invalid", "unknown field `priorty`"),
    (b'{"id": "x", "channel": "fax"}', "unrouted_channel", "routed channels: web, chat"),
])
def test_bad_leads_are_refused_with_the_reason(raw, kind, words):
    with pytest.raises(BadInput) as refused:
        lead(raw)
    assert refused.value.kind == kind and words in str(refused.value)


def test_a_body_over_the_limit_is_refused_before_parsing():
    with pytest.raises(BadInput, match="body is 2000 bytes; the limit is 1024") as refused:
        lead(b"x" * 2000, max_bytes=1024)
    assert refused.value.kind == "too_large"


def profile(raw: bytes) -> dict:
    return usable_profile(raw, ROUTING, max_bytes=64 * 1024)


def test_rep_profiles_take_an_int_or_a_per_channel_capacity():
    assert profile(b'{"capacity": 3}')["capacity"] == 3
    assert profile(b'{"capacity": {"chat": 3, "call": 1}, "attributes": {"rank": 7.5}}')["capacity"] == {"chat": 3, "call": 1}


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"capacity": {"fax": 1}}', "not routed: fax"),
    (b'{"capacity": -1}', "$.capacity"),
    (b'{"capacity": 1, "skills": {"spanish": 0}}', "$.skills"),
    (b'{"capacity": 1, "skills": {"spanish": 11}}', "$.skills"),
    (b'{"capacity": 1, "attributes": {"rank": "top"}}', "attributes.rank must be a number"),
    (b'{"capacity": 1, "attributes": {"rank": 1000}}', "attributes.rank must be a number"),
    (b'{"skills": {}}', "missing required field `capacity`"),
])
def test_bad_profiles_are_refused_with_the_reason(raw, words):
    with pytest.raises(BadInput) as refused:
        profile(raw)
    assert words in str(refused.value)


def test_ids_are_checked_in_words():
    assert check_id("rep-1.a:b_c", "rep") == "rep-1.a:b_c"
    with pytest.raises(BadInput, match="rep id 'a/b' must be 1..128 characters"):
        check_id("a/b", "rep")
