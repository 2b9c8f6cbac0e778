"""The routing file: rules, membership, defaults, and every kind of bad file refused in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.routing import DEFAULT_CHANNELS, RoutingError, load_routing, parse_routing

EXAMPLE = (Path(__file__).resolve().parents[2] / "routing" / "routing.yaml").read_text()


def test_the_built_in_default_is_one_load_aware_queue_over_everyone():
    routing = load_routing(None)
    assert [(q.name, q.strategy) for q in routing.queues] == [("default", "load_aware")]
    assert routing.channels == DEFAULT_CHANNELS
    assert routing.queue_for({"id": "x"}) == "default"
    assert routing.queues_for({"capacity": 1}) == ["default"]


def test_first_matching_rule_wins_and_the_rest_go_to_the_default_queue():
    routing = parse_routing(EXAMPLE, "example")
    assert routing.queue_for({"attributes": {"grade": "A", "source": "promo"}}) == "enterprise"
    assert routing.queue_for({"value": 60_000}) == "enterprise"
    assert routing.queue_for({"skills": ["spanish", "billing"]}) == "spanish"
    assert routing.queue_for({"attributes": {"source": ["flash-sale", "web"]}}) == "promo"
    assert routing.queue_for({"attributes": {"grade": "B"}, "value": 10}) == "general"


def test_conditions_on_channel_and_priority():
    routing = parse_routing(
        "queues: {calls: {}, urgent: {}, rest: {}}\n"
        "rules: [{when: {channel: [call, sms]}, queue: calls}, {when: {priority_gte: 7}, queue: urgent}]\n"
        "default_queue: rest\n", "t")
    assert routing.queue_for({"channel": "sms", "priority": 9}) == "calls"
    assert routing.queue_for({"channel": "web", "priority": 7}) == "urgent"
    assert routing.queue_for({"channel": "web", "priority": 6}) == "rest"


def test_membership_by_teams_skill_levels_and_attributes():
    routing = parse_routing(
        "queues:\n"
        "  ent: {members: {teams: [enterprise, key-accounts]}}\n"
        "  es: {members: {skills: {spanish: 5}}}\n"
        "  east: {members: {attributes: {region: [east, north]}}}\n", "t")
    assert routing.queues_for({"teams": ["key-accounts"], "skills": {"spanish": 5}, "attributes": {"region": "north"}}) == ["ent", "es", "east"]
    assert routing.queues_for({"teams": ["support"], "skills": {"spanish": 4}, "attributes": {"region": "west"}}) == []


def test_heartbeat_window_defaults_from_the_strategy_and_can_be_set():
    routing = parse_routing("queues: {a: {strategy: online_now}, b: {strategy: online_now, heartbeat_window_s: 5}, c: {}}", "t")
    assert [q.heartbeat_window_ms for q in routing.queues] == [15_000, 5_000, 0]


def test_fingerprint_follows_the_content():
    assert parse_routing(EXAMPLE, "a").fingerprint == parse_routing(EXAMPLE, "b").fingerprint
    assert parse_routing(EXAMPLE, "a").fingerprint != load_routing(None).fingerprint


@pytest.mark.parametrize(("text", "words"), [
    ("queues: [a", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
    ("queues: {a: {strategy: fastest}}", "unknown strategy 'fastest'"),
    ("queues: {a: {}}\nrules: [{queue: b}]", "rule 1 sends leads to queue 'b', which is not defined"),
    ("queues: {a: {}}\ndefault_queue: b", "default_queue 'b' is not defined"),
    ("queues: {'a b': {}}", "queue name 'a b'"),
    ("queues: {a: {stratgy: load_aware}}", "stratgy"),
    ("queues: {a: {heartbeat_window_s: -1}}", "heartbeat_window_s"),
    ("queues: {a: {}}\nrules: [{when: {priority_gte: 10}, queue: a}]", "priority_gte"),
    ("queues: {}", "queues"),
])
def test_bad_files_are_refused_in_words(text, words):
    with pytest.raises(RoutingError) as refused:
        parse_routing(text, "bad.yaml")
    assert words in str(refused.value) and "bad.yaml" in str(refused.value)


def test_an_unreadable_file_is_refused_in_words(tmp_path):
    with pytest.raises(RoutingError, match="cannot read routing file"):
        load_routing(tmp_path / "missing.yaml")
