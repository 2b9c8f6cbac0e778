"""Input shapes: defaults filled in, every kind of bad input refused with what is wrong."""

from __future__ import annotations

import pytest

from dispatcher.models import (
    BAD_INPUT_KINDS,
    BadInput,
    CloseRequest,
    Lead,
    PresenceChange,
    ReassignRequest,
    RepProfile,
    check_id,
    decode,
    routable_lead,
    usable_profile,
)
from dispatcher.routing import load_routing, parse_routing

ROUTING = load_routing(None)
LIMIT = 64 * 1024


def lead(raw: bytes, max_bytes: int = LIMIT, routing=ROUTING) -> dict:
    return routable_lead(raw, routing, max_bytes=max_bytes)


def profile(raw: bytes, routing=ROUTING) -> dict:
    return usable_profile(raw, routing, max_bytes=LIMIT)


# --- leads -----------------------------------------------------------------------------------

def test_a_minimal_lead_gets_its_defaults():
    assert lead(b'{"id": "a:1"}') == {"id": "a:1", "channel": "web", "priority": 0}


def test_explicit_defaults_are_kept():
    assert lead(b'{"id": "a", "channel": "web", "priority": 0}') == {"id": "a", "channel": "web", "priority": 0}


def test_a_full_lead_keeps_every_field():
    full = lead(b'{"id": "x", "channel": "chat", "priority": 9, "value": 10, "skills": ["es", "billing"], '
                b'"customer_id": "c-1", "attributes": {"region": "east", "score": 2.5, "vip": false, "tags": ["a", 1, true]}}')
    assert full == {
        "id": "x", "channel": "chat", "priority": 9, "value": 10.0, "skills": ["es", "billing"], "customer_id": "c-1",
        "attributes": {"region": "east", "score": 2.5, "vip": False, "tags": ["a", 1, True]},
    }
    assert isinstance(full["value"], float)


def test_the_bounds_themselves_are_accepted():
    assert lead(b'{"id": "' + b"x" * 128 + b'", "priority": 9, "value": 0}')["priority"] == 9
    assert lead(b'{"id": "A-z_0.9:x"}')["id"] == "A-z_0.9:x"


@pytest.mark.parametrize(("raw", "kind", "words"), [
    (b"{oops", "malformed_json", "malformed JSON"),
    (b'{"id": "x",}', "malformed_json", "malformed JSON"),
    (b"", "malformed_json", "malformed JSON"),
    (b"null", "invalid", "Expected `object`, got `null`"),
    (b'["x"]', "invalid", "Expected `object`, got `array`"),
    (b'{"id": "x", "priority": "high"}', "invalid", "Expected `int`, got `str` - at `$.priority`"),
    (b'{"id": "x", "priority": true}', "invalid", "Expected `int`, got `bool` - at `$.priority`"),
    (b'{"id": "x", "priority": 1.5}', "invalid", "$.priority"),
    (b'{"id": "x", "priority": 10}', "invalid", "Expected `int` <= 9 - at `$.priority`"),
    (b'{"id": "x", "priority": -1}', "invalid", "Expected `int` >= 0 - at `$.priority`"),
    (b'{"id": "x", "value": -1}', "invalid", "Expected `float` >= 0.0 - at `$.value`"),
    (b'{"id": "x", "value": "10"}', "invalid", "$.value"),
    (b'{"id": "x", "skills": "spanish"}', "invalid", "Expected `array`, got `str` - at `$.skills`"),
    (b'{"id": "x", "skills": ["a b"]}', "invalid", "$.skills[0]"),
    (b'{"id": "x", "attributes": {"a": {"b": 1}}}', "invalid", "$.attributes"),
    (b'{"id": "x", "attributes": {"a": [[1]]}}', "invalid", "$.attributes"),
    (b'{"id": "x", "attributes": {"": 1}}', "invalid", "$.attributes"),
    (b'{"id": "x", "attributes": ["region"]}', "invalid", "Expected `object`, got `array` - at `$.attributes`"),
    (b'{"id": "x", "customer_id": "' + b"c" * 257 + b'"}', "invalid", "$.customer_id"),
    (b'{"id": "' + b"x" * 129 + b'"}', "invalid", "$.id"),
    (b'{"id": ""}', "invalid", "$.id"),
    (b'{"id": "has space"}', "invalid", "$.id"),
    (b'{"id": "a/b"}', "invalid", "$.id"),
    (b'{"id": "caf\xc3\xa9"}', "invalid", "$.id"),
    (b'{"id": 5}', "invalid", "Expected `str`, got `int` - at `$.id`"),
    (b'{"priority": 1}', "invalid", "missing required field `id`"),
    (b'{"id": "x", "priorty": 1}', "invalid", "unknown field `priorty`"),
    (b'{"id": "x", "channel": "fax"}', "unrouted_channel", "channel 'fax' is not routed; routed channels: web, chat, call, email, form, sms"),
    (b'{"id": "x", "channel": "a b"}', "invalid", "$.channel"),
])
def test_bad_leads_are_refused_with_the_reason_and_kind(raw, kind, words):
    with pytest.raises(BadInput) as refused:
        lead(raw)
    assert refused.value.kind == kind
    assert kind in BAD_INPUT_KINDS
    assert words in str(refused.value), str(refused.value)


def test_invalid_input_says_what_it_was_checking():
    with pytest.raises(BadInput, match=r"^invalid lead: "):
        lead(b'{"id": "x", "priority": "high"}')


def test_a_body_over_the_limit_is_refused_before_parsing():
    with pytest.raises(BadInput, match="body is 2000 bytes; the limit is 1024") as refused:
        lead(b"x" * 2000, max_bytes=1024)
    assert refused.value.kind == "too_large"


def test_the_limit_is_inclusive():
    body = b'{"id": "x"}'
    assert lead(body, max_bytes=len(body))["id"] == "x"
    with pytest.raises(BadInput) as refused:
        lead(body, max_bytes=len(body) - 1)
    assert refused.value.kind == "too_large"


def test_the_routed_channels_come_from_the_routing_file():
    routing = parse_routing("channels: [web, chat]", "t")
    assert lead(b'{"id": "x", "channel": "chat"}', routing=routing)["channel"] == "chat"
    with pytest.raises(BadInput) as refused:
        lead(b'{"id": "x", "channel": "call"}', routing=routing)
    assert refused.value.kind == "unrouted_channel"
    assert str(refused.value) == "channel 'call' is not routed; routed channels: web, chat"


def test_decode_gives_the_struct():
    decoded = decode(b'{"id": "x", "skills": ["es"]}', Lead, max_bytes=LIMIT)
    assert isinstance(decoded, Lead) and decoded.skills == ["es"] and decoded.channel == "web"


# --- other inputs ----------------------------------------------------------------------------

def test_presence_close_and_reassign_bodies():
    assert decode(b'{"status": "away"}', PresenceChange, max_bytes=LIMIT).status == "away"
    assert decode(b'{"outcome": "won"}', CloseRequest, max_bytes=LIMIT).outcome == "won"
    assert decode(b"{}", ReassignRequest, max_bytes=LIMIT).rep_id is None
    assert decode(b'{"rep_id": "ana"}', ReassignRequest, max_bytes=LIMIT).rep_id == "ana"


@pytest.mark.parametrize(("raw", "shape", "words"), [
    (b'{"status": "busy"}', PresenceChange, "invalid presencechange: Invalid enum value 'busy' - at `$.status`"),
    (b"{}", PresenceChange, "missing required field `status`"),
    (b'{"outcome": ""}', CloseRequest, "$.outcome"),
    (b'{"outcome": "won", "note": 1}', CloseRequest, "unknown field `note`"),
    (b'{"rep_id": "a b"}', ReassignRequest, "$.rep_id"),
])
def test_bad_small_bodies_are_refused(raw, shape, words):
    with pytest.raises(BadInput) as refused:
        decode(raw, shape, max_bytes=LIMIT)
    assert refused.value.kind == "invalid" and words in str(refused.value), str(refused.value)


# --- rep profiles ----------------------------------------------------------------------------

def test_an_int_capacity_applies_to_every_channel():
    assert profile(b'{"capacity": 3}') == {"capacity": 3, "name": None, "skills": {}, "attributes": {}, "teams": []}
    assert profile(b'{"capacity": 0}')["capacity"] == 0


def test_a_per_channel_capacity_and_a_full_profile():
    got = profile(b'{"capacity": {"chat": 3, "call": 1}, "name": "Ana", "skills": {"spanish": 1, "billing": 10}, '
                  b'"attributes": {"rank": 7.5, "region": ["east"]}, "teams": ["enterprise"]}')
    assert got == {
        "capacity": {"chat": 3, "call": 1}, "name": "Ana", "skills": {"spanish": 1, "billing": 10},
        "attributes": {"rank": 7.5, "region": ["east"]}, "teams": ["enterprise"],
    }


@pytest.mark.parametrize("rank", [b"0", b"999", b"999.5", b"42"])
def test_ranks_from_0_to_999_are_accepted(rank):
    assert profile(b'{"capacity": 1, "attributes": {"rank": ' + rank + b"}}")["attributes"]["rank"] == float(rank)


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"capacity": {"fax": 1}}', "capacity names channels that are not routed: fax; routed channels: web, chat"),
    (b'{"capacity": {"web": 1, "pager": 1, "fax": 2}}', "not routed: fax, pager"),
    (b'{"capacity": -1}', "$.capacity"),
    (b'{"capacity": {"chat": -1}}', "$.capacity"),
    (b'{"capacity": 1000000}', "$.capacity"),
    (b'{"capacity": {}}', "$.capacity"),
    (b'{"capacity": true}', "$.capacity"),
    (b'{"capacity": "3"}', "$.capacity"),
    (b'{"capacity": 1.5}', "$.capacity"),
    (b'{"capacity": 1, "skills": {"spanish": 0}}', "Expected `int` >= 1 - at `$.skills[...]`"),
    (b'{"capacity": 1, "skills": {"spanish": 11}}', "Expected `int` <= 10 - at `$.skills[...]`"),
    (b'{"capacity": 1, "skills": ["spanish"]}', "$.skills"),
    (b'{"capacity": 1, "teams": "enterprise"}', "$.teams"),
    (b'{"capacity": 1, "attributes": {"rank": "top"}}', "attributes.rank must be a number from 0 to 999"),
    (b'{"capacity": 1, "attributes": {"rank": 1000}}', "attributes.rank must be a number from 0 to 999"),
    (b'{"capacity": 1, "attributes": {"rank": -1}}', "attributes.rank must be a number from 0 to 999"),
    (b'{"capacity": 1, "attributes": {"rank": true}}', "attributes.rank must be a number from 0 to 999"),
    (b'{"capacity": 1, "attributes": {"rank": [5]}}', "attributes.rank must be a number from 0 to 999"),
    (b'{"skills": {}}', "missing required field `capacity`"),
    (b'{"capcity": 1}', "unknown field `capcity`"),
    (b"[1]", "Expected `object`, got `array`"),
])
def test_bad_profiles_are_refused_with_the_reason(raw, words):
    routing = parse_routing("channels: [web, chat]", "t")
    with pytest.raises(BadInput) as refused:
        profile(raw, routing)
    assert refused.value.kind == "invalid"
    assert words in str(refused.value), str(refused.value)


def test_decode_gives_a_rep_profile_struct():
    decoded = decode(b'{"capacity": {"chat": 2}}', RepProfile, max_bytes=LIMIT)
    assert isinstance(decoded, RepProfile) and decoded.capacity == {"chat": 2} and decoded.teams == []


def test_a_profile_over_the_limit_is_refused():
    with pytest.raises(BadInput) as refused:
        usable_profile(b'{"capacity": 1}', ROUTING, max_bytes=5)
    assert refused.value.kind == "too_large"


# --- ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["rep-1.a:b_c", "x", "X" * 128, "0"])
def test_good_ids_come_back_unchanged(value):
    assert check_id(value, "rep") == value


@pytest.mark.parametrize("value", ["", "a/b", "a b", "x" * 129, "caf\u00e9", "a?b", "../etc"])
def test_bad_ids_are_refused_in_words(value):
    with pytest.raises(BadInput) as refused:
        check_id(value, "lead")
    assert str(refused.value) == f"lead id {value!r} must be 1..128 characters of A-Z a-z 0-9 . _ : -"
    assert refused.value.kind == "invalid"


def test_bad_input_is_a_value_error_with_invalid_as_the_default_kind():
    assert issubclass(BadInput, ValueError)
    assert BadInput("x").kind == "invalid"
    assert BAD_INPUT_KINDS == ("malformed_json", "invalid", "too_large", "unrouted_channel", "empty")


# --- known bug: `$` in the patterns also matches before a trailing newline --------------------

def test_check_id_refuses_a_trailing_newline():
    with pytest.raises(BadInput):
        check_id("abc\n", "rep")


def test_a_lead_id_with_a_trailing_newline_is_refused():
    with pytest.raises(BadInput):
        lead(b'{"id": "abc\\n"}')


def test_a_skill_name_with_a_trailing_newline_is_refused():
    with pytest.raises(BadInput):
        lead(b'{"id": "x", "skills": ["spanish\\n"]}')
