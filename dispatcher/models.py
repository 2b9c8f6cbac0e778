"""The declared shape of every input, checked in one pass while decoding (msgspec), for HTTP and
Kafka alike. Anything that does not fit is refused with what is wrong and where, in words."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from dispatcher.routing import NAME_PATTERN, Routing

# \Z, not $: `$` also matches before a trailing newline, which would let "id\n" through.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}\Z"

Id = Annotated[str, Meta(pattern=ID_PATTERN)]
Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
Text = Annotated[str, Meta(max_length=256)]
Scalar = str | int | float | bool
AttributeValue = Scalar | Annotated[list[Scalar], Meta(max_length=64)]
Attributes = Annotated[dict[Annotated[str, Meta(min_length=1, max_length=64)], AttributeValue], Meta(max_length=64)]
# A rep's unit count per bucket. Bounded because a rep coming online drains up to its capacity
# in one atomic step; 10,000 is the ceiling the API has always accepted.
Count = Annotated[int, Meta(ge=0, le=10_000)]
Level = Annotated[int, Meta(ge=1, le=10)]


# Every `kind` of BadInput, so counters by kind exist from the start (Prometheus's increase()
# does not count a series' first appearance).
BAD_INPUT_KINDS = ("malformed_json", "invalid", "too_large", "unrouted_channel", "empty")


class BadInput(ValueError):
    """Input that cannot be used; str() says what is wrong, `kind` names the sort of problem
    (a bounded label for metrics and the dead-letter record)."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class Lead(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    id: Id
    channel: Name = "web"
    priority: Annotated[int, Meta(ge=0, le=9)] = 0
    customer_id: Text | None = None
    value: Annotated[float, Meta(ge=0)] | None = None
    skills: Annotated[list[Name], Meta(max_length=32)] = []
    attributes: Attributes = {}


class RepProfile(msgspec.Struct, forbid_unknown_fields=True):
    capacity: Count | Annotated[dict[Name, Count], Meta(min_length=1, max_length=32)]
    name: Text | None = None
    skills: Annotated[dict[Name, Level], Meta(max_length=64)] = {}
    attributes: Attributes = {}
    teams: Annotated[list[Name], Meta(max_length=32)] = []


class PresenceChange(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["online", "away", "offline"]


class CloseRequest(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Annotated[str, Meta(min_length=1, max_length=64)]


class ReassignRequest(msgspec.Struct, forbid_unknown_fields=True):
    rep_id: Id | None = None


T = TypeVar("T")


def decode(raw: bytes, shape: type[T], *, max_bytes: int) -> T:
    if len(raw) > max_bytes:
        raise BadInput(f"body is {len(raw)} bytes; the limit is {max_bytes}", "too_large")
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as exc:
        raise BadInput(f"invalid {shape.__name__.lower()}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadInput(f"malformed JSON: {str(exc).removeprefix('JSON is malformed: ')}", "malformed_json") from None


def check_id(value: str, what: str) -> str:
    try:
        return msgspec.convert(value, Id)
    except msgspec.ValidationError:
        raise BadInput(f"{what} id {value!r} must be 1..128 characters of A-Z a-z 0-9 . _ : -") from None


def routable_lead(raw: bytes, routing: Routing, *, max_bytes: int) -> dict[str, Any]:
    """A lead as the scripts take it: validated, defaults filled in, on a routed channel."""
    lead = decode(raw, Lead, max_bytes=max_bytes)
    if lead.channel not in routing.channels:
        raise BadInput(
            f"channel {lead.channel!r} is not routed; routed channels: {', '.join(routing.channels)}", "unrouted_channel"
        )
    body = msgspec.to_builtins(lead)
    body.setdefault("channel", lead.channel)
    body.setdefault("priority", lead.priority)
    return body


def usable_profile(raw: bytes, routing: Routing, *, max_bytes: int) -> dict[str, Any]:
    profile = decode(raw, RepProfile, max_bytes=max_bytes)
    if isinstance(profile.capacity, dict):
        unrouted = sorted(set(profile.capacity) - set(routing.channels))
        if unrouted:
            raise BadInput(
                f"capacity names channels that are not routed: {', '.join(unrouted)}; "
                f"routed channels: {', '.join(routing.channels)}"
            )
    rank = profile.attributes.get("rank", 0)
    if isinstance(rank, bool) or not isinstance(rank, (int, float)) or not 0 <= rank < 1000:
        raise BadInput("attributes.rank must be a number from 0 to 999 (higher ranks are preferred)")
    return msgspec.to_builtins(profile)
