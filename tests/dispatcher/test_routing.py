"""The routing file: rules, membership, defaults, and every kind of bad file refused in words."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher import routing as routing_module
from dispatcher.routing import (
    DEFAULT_CHANNELS,
    Overflow,
    RoutingError,
    Sticky,
    load_routing,
    parse_routing,
    read_routing_file,
)
from strategies.policy import STRATEGIES

# The example the module documents, exactly as written in its docstring.
DOC_EXAMPLE = re.search(r"```yaml\n(.*?)```", routing_module.__doc__, re.S).group(1)
SHIPPED = (Path(__file__).resolve().parents[2] / "routing" / "routing.yaml").read_text()


@pytest.fixture(scope="module")
def example():
    return parse_routing(DOC_EXAMPLE, "example.yaml")


# --- the built-in default --------------------------------------------------------------------

def test_the_built_in_default_is_one_load_aware_queue_over_everyone():
    routing = load_routing(None)
    assert [(q.name, q.strategy, q.heartbeat_window_ms, q.sticky, q.overflow) for q in routing.queues] == [
        ("default", "load_aware", 0, None, None)
    ]
    assert routing.channels == DEFAULT_CHANNELS == ("web", "chat", "call", "email", "form", "sms")
    assert routing.default_queue == "default"
    assert routing.source == "built-in default"
    for lead in ({"id": "x"}, {"channel": "sms", "priority": 9, "value": 1e9, "skills": ["es"], "attributes": {"grade": "A"}}):
        assert routing.queue_for(lead) == "default"
    for profile in ({"capacity": 1}, {"teams": ["any"], "skills": {"es": 1}, "attributes": {"region": "east"}}):
        assert routing.queues_for(profile) == ["default"]


@pytest.mark.parametrize("text", ["", "  \n", "# routing comes later\n\n  # queues: {vip: {}}\n", "---\n"])
def test_an_empty_or_comments_only_file_is_the_built_in_default(text):
    routing = parse_routing(text, "empty.yaml")
    assert routing.fingerprint == load_routing(None).fingerprint
    assert routing.default_queue == "default" and routing.source == "empty.yaml"


# --- the documented example ------------------------------------------------------------------

def test_the_documented_example_defines_its_queues(example):
    assert [(q.name, q.strategy, q.heartbeat_window_ms) for q in example.queues] == [
        ("enterprise", "priority", 0),
        ("spanish", "load_aware", 0),
        ("promo", "online_now", 10_000),
        ("general", "load_aware", 0),
    ]
    assert example.by_name["promo"].overflow == Overflow(after_s=30, to="general")
    assert example.by_name["general"].sticky == Sticky(field="customer_id", wait_s=20)
    assert example.default_queue == "general"
    assert example.channels == ("web", "chat", "call", "email", "form", "sms")


@pytest.mark.parametrize(("lead", "queue"), [
    ({"attributes": {"grade": "A"}, "value": 10_000}, "enterprise"),  # both conditions of rule 1, at the bound
    ({"attributes": {"grade": "A"}, "value": 9_999.99}, "general"),  # value too low: rule 1 needs both
    ({"attributes": {"grade": "A"}}, "general"),  # no value at all
    ({"attributes": {"grade": "B"}, "value": 50_000}, "general"),
    ({"skills": ["spanish"]}, "spanish"),
    ({"skills": ["billing", "spanish"]}, "spanish"),
    ({"skills": ["billing"]}, "general"),
    ({"attributes": {"source": "promo"}}, "promo"),
    ({"attributes": {"source": ["web", "promo"]}}, "promo"),  # a list-valued lead attribute: any of
    ({"attributes": {"source": ["web", "ads"]}}, "general"),
    ({"attributes": {"grade": "A", "source": "promo"}, "value": 20_000, "skills": ["spanish"]}, "enterprise"),
    ({"attributes": {"source": "promo"}, "skills": ["spanish"]}, "spanish"),  # first match wins
    ({}, "general"),
])
def test_the_first_matching_rule_wins_else_the_default_queue(example, lead, queue):
    assert example.queue_for(lead) == queue


def test_queue_membership_in_the_documented_example(example):
    assert example.queues_for({"teams": ["enterprise"], "skills": {"spanish": 5}}) == ["enterprise", "spanish", "promo", "general"]
    assert example.queues_for({"teams": ["smb"], "skills": {"spanish": 4}}) == ["promo", "general"]


def test_the_shipped_example_file_is_valid_and_routes_as_it_says():
    routing = parse_routing(SHIPPED, "routing/routing.yaml")
    assert routing.queue_for({"attributes": {"grade": "A"}}) == "enterprise"
    assert routing.queue_for({"value": 60_000}) == "enterprise"
    assert routing.queue_for({"attributes": {"source": ["flash-sale", "web"]}}) == "promo"
    assert routing.queue_for({"attributes": {"grade": "B"}, "value": 10}) == "general"


# --- conditions ------------------------------------------------------------------------------

QUEUES = "queues: {a: {}, b: {}, rest: {}}\ndefault_queue: rest\n"


def one_rule(when: str):
    return parse_routing(QUEUES + f"rules: [{{when: {when}, queue: a}}]\n", "t")


def test_channel_as_a_scalar_or_a_list_and_web_when_the_lead_names_none():
    assert one_rule("{channel: chat}").queue_for({"channel": "chat"}) == "a"
    assert one_rule("{channel: chat}").queue_for({"channel": "web"}) == "rest"
    listed = one_rule("{channel: [call, sms]}")
    assert [listed.queue_for({"channel": c}) for c in ("call", "sms", "chat")] == ["a", "a", "rest"]
    assert one_rule("{channel: web}").queue_for({}) == "a"


def test_priority_gte_is_inclusive():
    routing = one_rule("{priority_gte: 7}")
    assert [routing.queue_for({"priority": p}) for p in (9, 7, 6)] == ["a", "a", "rest"]
    assert routing.queue_for({}) == "rest"


def test_value_gte_is_inclusive_and_a_lead_without_value_does_not_match():
    routing = one_rule("{value_gte: 1000}")
    assert [routing.queue_for({"value": v}) for v in (1000, 1000.5, 999.9)] == ["a", "a", "rest"]
    assert routing.queue_for({}) == "rest"
    assert routing.queue_for({"value": None}) == "rest"


def test_skills_must_all_be_asked_for_by_the_lead():
    routing = one_rule("{skills: [spanish, billing]}")
    assert routing.queue_for({"skills": ["billing", "spanish", "vip"]}) == "a"
    assert routing.queue_for({"skills": ["spanish"]}) == "rest"
    assert routing.queue_for({}) == "rest"


def test_attributes_scalar_list_and_list_valued_lead_attributes():
    routing = one_rule("{attributes: {region: [east, north], grade: A}}")
    assert routing.queue_for({"attributes": {"region": "north", "grade": "A"}}) == "a"
    assert routing.queue_for({"attributes": {"region": ["west", "east"], "grade": ["A", "B"]}}) == "a"
    assert routing.queue_for({"attributes": {"region": "west", "grade": "A"}}) == "rest"
    assert routing.queue_for({"attributes": {"region": "east"}}) == "rest", "every attribute must match"
    assert routing.queue_for({"attributes": {"region": [], "grade": "A"}}) == "rest"


def test_numeric_attributes_match_by_value():
    routing = one_rule("{attributes: {employees: [100, 500]}}")
    assert routing.queue_for({"attributes": {"employees": 500}}) == "a"
    assert routing.queue_for({"attributes": {"employees": 500.0}}) == "a"
    assert routing.queue_for({"attributes": {"employees": "500"}}) == "rest"
    assert one_rule("{attributes: {score: 1.0}}").queue_for({"attributes": {"score": 1}}) == "a"


@pytest.mark.parametrize(("expected", "actual", "queue"), [
    ("1", True, "rest"),
    ("1", [True], "rest"),
    ("1.0", True, "rest"),
    ("0", False, "rest"),
    ("true", 1, "rest"),
    ("true", 1.0, "rest"),
    ("false", 0, "rest"),
    ("[1, 2]", True, "rest"),
    ("true", True, "a"),
    ("false", False, "a"),
    ("[1, true]", True, "a"),
    ("[1, true]", 1, "a"),
    ("1", 1, "a"),
])
def test_yes_no_attributes_never_match_numbers(expected, actual, queue):
    assert one_rule(f"{{attributes: {{vip: {expected}}}}}").queue_for({"attributes": {"vip": actual}}) == queue


def test_all_conditions_of_a_rule_must_hold():
    routing = one_rule("{channel: call, priority_gte: 5, value_gte: 10, skills: [es], attributes: {tier: gold}}")
    lead = {"channel": "call", "priority": 5, "value": 10, "skills": ["es"], "attributes": {"tier": "gold"}}
    assert routing.queue_for(lead) == "a"
    for key, wrong in (("channel", "web"), ("priority", 4), ("value", 9), ("skills", []), ("attributes", {"tier": "x"})):
        assert routing.queue_for({**lead, key: wrong}) == "rest", key


def test_a_rule_without_conditions_takes_everything_and_later_rules_never_run():
    routing = parse_routing(QUEUES + "rules: [{queue: b}, {when: {priority_gte: 0}, queue: a}]\n", "t")
    assert routing.queue_for({"priority": 9}) == "b"


# --- membership ------------------------------------------------------------------------------

MEMBERSHIP = parse_routing(
    "queues:\n"
    "  ent: {members: {teams: [enterprise, key-accounts]}}\n"
    "  es: {members: {skills: {spanish: 5, billing: 2}}}\n"
    "  east: {members: {attributes: {region: [east, north], tier: 1}}}\n"
    "  everyone: {}\n"
    "default_queue: everyone\n",
    "t",
)


def test_teams_any_of():
    assert MEMBERSHIP.queues_for({"teams": ["support", "key-accounts"]}) == ["ent", "everyone"]
    assert MEMBERSHIP.queues_for({"teams": ["support"]}) == ["everyone"]
    assert MEMBERSHIP.queues_for({"teams": []}) == ["everyone"]


def test_skill_levels_at_least_and_every_skill():
    assert MEMBERSHIP.queues_for({"skills": {"spanish": 5, "billing": 2}}) == ["es", "everyone"]
    assert MEMBERSHIP.queues_for({"skills": {"spanish": 10, "billing": 9}}) == ["es", "everyone"]
    assert MEMBERSHIP.queues_for({"skills": {"spanish": 4, "billing": 9}}) == ["everyone"]
    assert MEMBERSHIP.queues_for({"skills": {"spanish": 9}}) == ["everyone"]


def test_attributes_scalar_list_and_list_valued_profile_attributes():
    assert MEMBERSHIP.queues_for({"attributes": {"region": "north", "tier": 1}}) == ["east", "everyone"]
    assert MEMBERSHIP.queues_for({"attributes": {"region": ["west", "east"], "tier": 1}}) == ["east", "everyone"]
    assert MEMBERSHIP.queues_for({"attributes": {"region": "west", "tier": 1}}) == ["everyone"]
    assert MEMBERSHIP.queues_for({"attributes": {"region": "east"}}) == ["everyone"]


def test_membership_attributes_never_take_a_yes_no_value_for_a_number():
    assert MEMBERSHIP.queues_for({"attributes": {"region": "east", "tier": True}}) == ["everyone"]
    assert MEMBERSHIP.queues_for({"attributes": {"region": "east", "tier": 1.0}}) == ["east", "everyone"]
    flagged = parse_routing("queues: {vip: {members: {attributes: {vip: true}}}, rest: {}}\ndefault_queue: rest", "t")
    assert flagged.queues_for({"attributes": {"vip": 1}}) == ["rest"]
    assert flagged.queues_for({"attributes": {"vip": True}}) == ["vip", "rest"]


def test_a_profile_can_belong_to_several_queues_in_file_order():
    profile = {"teams": ["enterprise"], "skills": {"spanish": 5, "billing": 2}, "attributes": {"region": "east", "tier": 1}}
    assert MEMBERSHIP.queues_for(profile) == ["ent", "es", "east", "everyone"]


# --- heartbeat windows -----------------------------------------------------------------------

def test_heartbeat_window_defaults_from_the_strategy_and_can_be_set():
    routing = parse_routing(
        "queues:\n"
        "  a: {strategy: online_now}\n"
        "  b: {strategy: online_now, heartbeat_window_s: 5}\n"
        "  c: {}\n"
        "  d: {strategy: online_now, heartbeat_window_s: 0}\n"
        "  e: {strategy: load_aware, heartbeat_window_s: 2.5}\n"
        "  f: {strategy: priority}\n"
        "default_queue: c\n",
        "t",
    )
    assert [q.heartbeat_window_ms for q in routing.queues] == [15_000, 5_000, 0, 0, 2_500, 0]


# --- the default queue ----------------------------------------------------------------------

def test_a_single_queue_is_the_default_queue_without_naming_it():
    routing = parse_routing("queues: {only: {}}\nrules: [{when: {priority_gte: 5}, queue: only}]", "t")
    assert routing.default_queue == "only" and routing.queue_for({}) == "only"


def test_without_default_queue_unmatched_leads_go_to_the_last_queue():
    implicit = parse_routing("queues: {vip: {}, general: {}}\nrules: [{when: {priority_gte: 5}, queue: vip}]", "t")
    assert implicit.default_queue == "general" and implicit.queue_for({"priority": 1}) == "general"
    named = parse_routing("queues: {vip: {}, general: {}}\ndefault_queue: vip", "t")
    assert named.default_queue == "vip" and named.queue_for({}) == "vip"


# --- fingerprint -----------------------------------------------------------------------------

def test_the_fingerprint_is_stable_for_the_same_content():
    a = parse_routing(DOC_EXAMPLE, "a.yaml")
    b = parse_routing("# a comment\n" + DOC_EXAMPLE.replace("{}", "{ }"), "b.yaml")
    assert a.fingerprint == b.fingerprint == parse_routing(DOC_EXAMPLE, "a.yaml").fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", a.fingerprint)
    assert parse_routing("queues: {default: {}}", "x").fingerprint == load_routing(None).fingerprint


@pytest.mark.parametrize("change", [
    ("heartbeat_window_s: 10", "heartbeat_window_s: 11"),
    ("value_gte: 10000", "value_gte: 10001"),
    ("default_queue: general", "default_queue: promo"),
    ("channels: [web, chat, call, email, form, sms]", "channels: [web, chat]"),
    ("strategy: load_aware, members: {skills: {spanish: 5}}", "strategy: online_now, members: {skills: {spanish: 5}}"),
])
def test_the_fingerprint_changes_with_the_content(change):
    old, new = change
    assert old in DOC_EXAMPLE
    changed = DOC_EXAMPLE.replace(old, new)
    assert parse_routing(changed, "x").fingerprint != parse_routing(DOC_EXAMPLE, "x").fingerprint


# --- bad files -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "words"), [
    ("queues: [a", ["not valid YAML"]),
    ("queues: {a: {}\nrules: [", ["not valid YAML"]),
    ("- just\n- a list\n", ["must be a mapping"]),
    ("just a string", ["must be a mapping"]),
    ("queues: {a: {strategy: fastest}}", ["queue 'a'", "unknown strategy 'fastest'", f"known strategies: {', '.join(sorted(STRATEGIES))}"]),
    ("queues: {a: {}}\nrules: [{queue: b}]", ["rule 1 sends leads to queue 'b', which is not defined"]),
    ("queues: {a: {}}\nrules: [{queue: a}, {queue: c}]", ["rule 2 sends leads to queue 'c', which is not defined"]),
    ("queues: {a: {}}\ndefault_queue: b", ["default_queue 'b' is not defined"]),
    ("queues: {'a b': {}}", ["queue name 'a b'", "[A-Za-z0-9_.-]"]),
    ("queues: {'a/b': {}}", ["queue name 'a/b'"]),
    ("queues: {" + "q" * 65 + ": {}}", ["queue name", "1..64"]),
    ("channels: [web, 'f x']", ["channel name 'f x'"]),
    ("channels: []", ["channels"]),
    ("queues: {a: {stratgy: load_aware}}", ["queues.a.stratgy", "not permitted"]),
    ("queues: {a: {members: {team: [x]}}}", ["queues.a.members.team", "not permitted"]),
    ("queues: {a: {}}\nrules: [{when: {priorty_gte: 1}, queue: a}]", ["priorty_gte", "not permitted"]),
    ("queus: {a: {}}", ["queus", "not permitted"]),
    ("queues: {a: {heartbeat_window_s: -1}}", ["queues.a.heartbeat_window_s", "greater than or equal to 0"]),
    ("queues: {a: {}}\nrules: [{when: {priority_gte: 10}, queue: a}]", ["priority_gte", "less than or equal to 9"]),
    ("queues: {a: {}}\nrules: [{when: {value_gte: -5}, queue: a}]", ["value_gte", "greater than or equal to 0"]),
    ("queues: {a: {}}\nrules: [{when: {channel: chat}}]", ["queue", "Field required"]),
    ("queues: {}", ["queues", "at least 1"]),
])
def test_bad_files_are_refused_in_words(text, words):
    with pytest.raises(RoutingError) as refused:
        parse_routing(text, "bad.yaml")
    message = str(refused.value)
    assert message.startswith("bad.yaml"), message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize(("rules", "message"), [
    ("[{queue: a}, {queue: nowhere}]", "rule 2 sends leads to queue 'nowhere', which is not defined"),
    ("[{queue: a}, {when: {channel: fax}, queue: a}]",
     "rule 2 names channel 'fax', which is not in channels (web, chat), so no lead on it ever reaches the rule"),
    ("[{queue: a}, {when: {channel: [chat, fax]}, queue: a}]", "rule 2 names channel 'fax', which is not in channels"),
    ("[{queue: a}, {when: {priorty_gte: 1}, queue: a}]", "rule 2, when.priorty_gte: Extra inputs are not permitted"),
    ("[{queue: a}, {queue: a, then: b}]", "rule 2, then: Extra inputs are not permitted"),
    ("[{queue: a}, {when: {channel: chat}}]", "rule 2, queue: Field required"),
    ("[{queue: a}, {when: {priority_gte: 10}, queue: a}]",
     "rule 2, when.priority_gte: Input should be less than or equal to 9"),
    ("[{queue: a}, {when: {skills: spanish}, queue: a}]", "rule 2, when.skills: Input should be a valid list"),
    ("[{queue: a}, a]", "rule 2: Input should be a valid dictionary"),
])
def test_every_rule_error_counts_rules_from_one(rules, message):
    with pytest.raises(RoutingError) as refused:
        parse_routing(f"channels: [web, chat]\nqueues: {{a: {{}}}}\nrules: {rules}\n", "bad.yaml")
    assert message in str(refused.value) and "rules." not in str(refused.value), str(refused.value)


def test_a_rule_on_a_channel_the_default_channels_lack_is_refused():
    with pytest.raises(RoutingError) as refused:
        parse_routing("queues: {a: {}}\nrules: [{when: {channel: fax}, queue: a}]", "bad.yaml")
    assert "rule 1 names channel 'fax', which is not in channels (web, chat, call, email, form, sms)" in str(refused.value)


def test_a_queue_name_with_a_trailing_newline_is_refused():
    with pytest.raises(RoutingError, match="queue name"):
        parse_routing('queues: {"a\\n": {}}', "bad.yaml")


def test_a_missing_file_is_refused_in_words(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RoutingError) as refused:
        load_routing(missing)
    assert "cannot read routing file" in str(refused.value) and str(missing) in str(refused.value)
    assert "No such file" in str(refused.value)


def test_a_directory_is_refused_in_words(tmp_path):
    with pytest.raises(RoutingError, match="cannot read routing file"):
        load_routing(tmp_path)


def test_a_file_on_disk_is_read_and_checked_under_its_path(tmp_path):
    good = tmp_path / "routing.yaml"
    good.write_text(DOC_EXAMPLE)
    routing = load_routing(good)
    assert routing.source == str(good) and routing.default_queue == "general"
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues: {a: {strategy: fastest}}")
    with pytest.raises(RoutingError, match=re.escape(str(bad)) + ".*unknown strategy"):
        load_routing(bad)


def test_a_routing_error_is_a_value_error():
    assert issubclass(RoutingError, ValueError)


async def test_a_file_still_being_written_is_not_read_as_a_routing(tmp_path):
    path = tmp_path / "routing.yaml"
    path.write_text("queues:\n  vip: {}\n")

    async def finish_writing() -> None:
        await asyncio.sleep(0.05)
        path.write_text("queues:\n  vip: {}\n  general: {}\n")

    unsettled, _ = await asyncio.gather(read_routing_file(path, settle_s=0.2), finish_writing())
    assert unsettled is None
    assert await read_routing_file(path, settle_s=0.01) == "queues:\n  vip: {}\n  general: {}\n"


@pytest.mark.parametrize("text", ["", "\n\n", "# all commented out\n# queues: {}\n"])
async def test_an_empty_file_never_replaces_the_routing_in_force(tmp_path, text):
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    with pytest.raises(RoutingError, match="is empty or holds only comments"):
        await read_routing_file(path, settle_s=0.01)


def test_every_problem_of_a_file_is_told_at_once():
    text = ("channels: [web]\nqueues: {vip: {strategy: nonsense}, all: {}}\n"
            "rules:\n  - {when: {channel: sms}, queue: vip}\n  - {queue: nowhere}\ndefault_queue: missing\n")
    with pytest.raises(RoutingError) as refused:
        parse_routing(text, "r.yaml")
    assert len(refused.value.reasons) == 4, refused.value.reasons
    assert [reason.split(" ")[0] for reason in refused.value.reasons] == ["queue", "rule", "rule", "default_queue"]
    assert str(refused.value).startswith("r.yaml: queue 'vip': ") and "; rule 1 names channel 'sms'" in str(refused.value)


def test_value_lt_and_priority_lte_bound_from_above():
    routing = parse_routing(
        "queues: {small: {}, calm: {}, rest: {}}\n"
        "rules:\n  - {when: {value_lt: 1000}, queue: small}\n  - {when: {priority_lte: 3}, queue: calm}\n"
        "default_queue: rest\n", "bounds.yaml")
    assert routing.queue_for({"value": 999.99, "priority": 9}) == "small"
    assert routing.queue_for({"priority": 9}) == "small", "a lead without a value counts as 0"
    assert routing.queue_for({"value": 1000, "priority": 3}) == "calm"
    assert routing.queue_for({"value": 1000, "priority": 4}) == "rest"


OFFICE = ("timezone: Europe/Berlin\nqueues: {office: {}, night: {}, weekend: {}, rest: {}}\nrules:\n"
          "  - {when: {weekdays: [mon, tue, wed, thu, fri], hours: '09:00-18:00'}, queue: office}\n"
          "  - {when: {hours: '22:00-06:00'}, queue: night}\n"
          "  - {when: {weekdays: [sat, sun]}, queue: weekend}\n"
          "default_queue: rest\n")


@pytest.mark.parametrize(("utc", "queue"), [
    ("2026-11-30T08:00", "office"),   # Monday 09:00 in Berlin: the start is included
    ("2026-11-30T16:59", "office"),   # Monday 17:59
    ("2026-11-30T17:00", "rest"),     # Monday 18:00: the end is not
    ("2026-11-30T21:30", "night"),    # Monday 22:30: a span across midnight
    ("2026-12-01T04:59", "night"),    # Tuesday 05:59
    ("2026-12-05T12:00", "weekend"),  # Saturday 13:00
    ("2026-12-05T22:00", "night"),    # Saturday 23:00: the first rule that matches wins
])
def test_weekdays_and_hours_read_the_files_timezone(utc, queue):
    now = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert parse_routing(OFFICE, "office.yaml").queue_for({}, now) == queue


@pytest.mark.parametrize(("text", "words"), [
    ("timezone: Mars/Olympus\n", "timezone 'Mars/Olympus' is not a time zone name"),
    ("rules: [{when: {hours: '9-18'}, queue: default}]\n", "'9-18' is not a span of 24-hour times"),
    ("rules: [{when: {hours: '09:00-24:00'}, queue: default}]\n", "is not a span of 24-hour times"),
    ("rules: [{when: {weekdays: [funday]}, queue: default}]\n", "'mon', 'tue'"),
    ("rules: [{when: {value_lt: 0}, queue: default}]\n", "value_lt"),
    ("rules: [{when: {priority_lte: 10}, queue: default}]\n", "priority_lte"),
])
def test_bad_time_and_bound_conditions_are_refused_in_words(text, words):
    with pytest.raises(RoutingError, match=re.escape(words)):
        parse_routing(text, "bad.yaml")
