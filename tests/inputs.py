"""Hypothesis strategies for every input the dispatcher takes: the HTTP bodies and the `leads`
topic's values (a lead, the same body as POST /v1/leads).

`valid_*` give Python values the contract says must be accepted (orjson encodes them);
`hostile_*` give raw bytes of every sort a careless producer or an attacker sends: valid bodies,
bodies with a field replaced by any JSON value or dropped or added, numbers no Python float holds
(1e400, 400 digits), integers beyond 64 bits, NaN and Infinity, lone surrogates, invalid UTF-8,
truncated text and plain noise. Shared by the model tests and any test that needs traffic."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dispatcher.routing import load_routing

ROUTED_CHANNELS = load_routing(None).channels
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
PRESENCE_STATUSES = ("online", "away", "offline")

# Reproducible in CI, nothing written to a .hypothesis directory in the working tree.
FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class RawNumber:
    """A JSON number written as is, for literals no Python value encodes to (1e400, -0e-99999)."""

    text: str


def json_text(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON as any producer might write it: integers of any size, NaN and Infinity as the
    non-standard tokens, lone surrogates as escapes (ascii_only) or as the invalid UTF-8 bytes a
    careless encoder emits (not ascii_only)."""
    def write(item: Any) -> str:
        if isinstance(item, RawNumber):
            return item.text
        if isinstance(item, dict):
            return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=ascii_only)}:{write(v)}" for k, v in item.items()) + "}"
        if isinstance(item, list):
            return "[" + ",".join(write(v) for v in item) + "]"
        return json.dumps(item, ensure_ascii=ascii_only)

    return write(value).encode("utf-8", "surrogatepass")


# --- valid inputs ----------------------------------------------------------------------------

ids = st.text(string.ascii_letters + string.digits + "._:-", min_size=1, max_size=128)
names = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=64)
int64s = st.integers(INT64_MIN, INT64_MAX)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.one_of(st.text(max_size=64), int64s, finite_floats, st.booleans())
attribute_values = scalars | st.lists(scalars, max_size=64)
attribute_keys = st.text(min_size=1, max_size=64)
attributes = st.dictionaries(attribute_keys, attribute_values, max_size=64)


def valid_leads(channels: tuple[str, ...] = ROUTED_CHANNELS) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"id": ids}, optional={
        "channel": st.sampled_from(channels),
        "priority": st.integers(0, 9),
        "customer_id": st.none() | st.text(max_size=256),
        "value": st.none() | st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        "skills": st.lists(names, max_size=32),
        "attributes": attributes,
    })


def valid_profiles(channels: tuple[str, ...] = ROUTED_CHANNELS) -> st.SearchStrategy[dict[str, Any]]:
    capacity = st.integers(0, 10_000) | st.dictionaries(st.sampled_from(channels), st.integers(0, 10_000), min_size=1)
    # attributes.rank orders reps, so it is a number from 0 to 999 when present.
    rank = st.integers(0, 999) | st.floats(0, 999.99, allow_nan=False)
    profile_attributes = st.builds(
        lambda given, ranked: {**given, **ranked},
        st.dictionaries(attribute_keys.filter(lambda key: key != "rank"), attribute_values, max_size=63),
        st.fixed_dictionaries({}, optional={"rank": rank}),
    )
    return st.fixed_dictionaries({"capacity": capacity}, optional={
        "name": st.none() | st.text(max_size=256),
        "skills": st.dictionaries(names, st.integers(1, 10), max_size=64),
        "attributes": profile_attributes,
        "teams": st.lists(names, max_size=32),
    })


valid_presence_changes = st.fixed_dictionaries({"status": st.sampled_from(PRESENCE_STATUSES)})
valid_close_requests = st.fixed_dictionaries({"outcome": st.text(min_size=1, max_size=64)})
valid_reassign_requests = st.fixed_dictionaries({}, optional={"rep_id": st.none() | ids})


# --- hostile inputs --------------------------------------------------------------------------

json_numbers = st.one_of(
    st.integers(),
    st.integers(INT64_MAX - 2, 2**64 + 2),
    st.integers(-(2**64) - 2, INT64_MIN + 2),
    st.floats(),
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,400})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,5})?\Z").map(RawNumber),
)
# Text with a lone surrogate: an escape JSON allows but UTF-8 cannot carry.
broken_texts = st.builds(lambda before, lone, after: before + lone + after,
                         st.text(max_size=8), st.characters(categories=["Cs"]), st.text(max_size=8))
json_texts = st.text(max_size=80) | names | broken_texts
json_scalars = st.one_of(st.none(), st.booleans(), json_numbers, json_texts)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(json_texts, inner, max_size=6),
    max_leaves=24,
)
# Just past the bounds: 64-bit integers, the float range, keys and strings of the wrong length.
edge_values = st.sampled_from([
    INT64_MAX + 1, INT64_MIN - 1, RawNumber("1e400"), RawNumber("1" + "0" * 400), "", "v" * 257, None,
])
edge_keys = st.sampled_from(["", "k" * 65, "rank"])


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path to every object and list in a body, the body itself first."""
    if not isinstance(value, (dict, list)):
        return []
    steps = value.items() if isinstance(value, dict) else enumerate(value)
    return [path] + [inner for step, item in steps for inner in _containers(item, (*path, step))]


@st.composite
def _altered(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, Any]:
    """A valid body with one or two changes anywhere in it (a field, an attribute, a list
    item): a value replaced by any JSON value, a key dropped or added."""
    body = draw(valid)
    for _ in range(draw(st.integers(1, 2))):
        # Inside the fields half the time: a change at the top alone rarely gets past the first field.
        paths = _containers(body)
        inner = paths[1:] if len(paths) > 1 and draw(st.booleans()) else paths
        target = body
        for step in draw(st.sampled_from(inner)):
            target = target[step]
        if isinstance(target, dict):
            known = st.sampled_from(sorted(target)) if target else st.nothing()
            key = draw(st.one_of(st.sampled_from(fields), known, edge_keys, json_texts))
            if key in target and draw(st.booleans()):
                del target[key]
            else:
                target[key] = draw(replacements)
        elif target and draw(st.booleans()):
            target[draw(st.integers(0, len(target) - 1))] = draw(replacements)
        else:
            target.append(draw(replacements))
    return body


replacements = st.one_of(edge_values, names, json_scalars, json_values)


def _hostile(valid: st.SearchStrategy[dict[str, Any]], fields: tuple[str, ...]) -> st.SearchStrategy[bytes]:
    def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
        return st.builds(json_text, values, ascii_only=st.booleans())

    altered = encoded(_altered(valid, fields))
    cut = st.builds(lambda text, at: text[:at], encoded(valid) | altered, st.integers(0, 200))
    return st.one_of(encoded(valid), altered, altered, altered, encoded(json_values), cut, st.binary(max_size=200))


def hostile_leads(channels: tuple[str, ...] = ROUTED_CHANNELS) -> st.SearchStrategy[bytes]:
    # A well-formed lead on a channel the routing does not know is hostile too.
    return _hostile(valid_leads((*channels, "unrouted")), ("id", "channel", "priority", "customer_id", "value", "skills", "attributes"))


def hostile_profiles(channels: tuple[str, ...] = ROUTED_CHANNELS) -> st.SearchStrategy[bytes]:
    return _hostile(valid_profiles((*channels, "unrouted")), ("capacity", "name", "skills", "attributes", "teams"))


hostile_presence_changes = _hostile(valid_presence_changes, ("status",))
hostile_close_requests = _hostile(valid_close_requests, ("outcome",))
hostile_reassign_requests = _hostile(valid_reassign_requests, ("rep_id",))


def same_json(given: Any, kept: Any) -> bool:
    """Whether `kept` means what `given` (the input, as a plain JSON parser reads it) means:
    equal numbers as JSON's readers hold them (doubles, unless both are integers), booleans
    never equal to numbers, lists and objects element by element."""
    if isinstance(given, bool) or isinstance(kept, bool):
        return type(given) is type(kept) and given == kept
    if isinstance(given, (int, float)) and isinstance(kept, (int, float)):
        both_ints = isinstance(given, int) and isinstance(kept, int)
        return given == kept if both_ints else float(given) == float(kept)
    if isinstance(given, list) and isinstance(kept, list):
        return len(given) == len(kept) and all(map(same_json, given, kept))
    if isinstance(given, dict) and isinstance(kept, dict):
        return given.keys() == kept.keys() and all(same_json(given[k], kept[k]) for k in given)
    return type(given) is type(kept) and given == kept
