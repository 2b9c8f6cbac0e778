"""The declared shape of every input, checked in one pass while decoding (msgspec), for HTTP and
Kafka alike. Anything that does not fit is refused with what is wrong and where, in words.

Whatever the shapes accept can be encoded again without loss: orjson refuses integers beyond 64
bits (so they are refused here, before anything is written), and JSON has no NaN or Infinity
(msgspec refuses them, and numbers beyond the float range, while decoding)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

import msgspec
from msgspec import Meta
from msgspec import inspect as shapes

from dispatcher.routing import NAME_PATTERN, Routing
from dispatcher.schedule import ScheduleError, parse_schedule
from strategies.base import MAX_WEIGHT, MIN_WEIGHT

# \Z, not $: `$` also matches before a trailing newline, which would let "id\n" through.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}\Z"
ID_WORDS = "1..128 characters of A-Z a-z 0-9 . _ : -"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# A description on a pattern is what an error says is expected: people do not read regexes.
Id = Annotated[str, Meta(pattern=ID_PATTERN, description=ID_WORDS)]
Name = Annotated[str, Meta(pattern=NAME_PATTERN, description="1..64 characters of A-Z a-z 0-9 _ . -")]
Text = Annotated[str, Meta(max_length=256)]
Int64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
Scalar = str | Int64 | float | bool
AttributeValue = Scalar | Annotated[list[Scalar], Meta(max_length=64)]
Attributes = Annotated[dict[Annotated[str, Meta(min_length=1, max_length=64)], AttributeValue], Meta(max_length=64)]
# A rep's unit count per bucket. Bounded because a rep coming online drains up to its capacity
# in one atomic step; 10,000 is the ceiling the API has always accepted.
Count = Annotated[int, Meta(ge=0, le=10_000)]
Level = Annotated[int, Meta(ge=1, le=10)]


# Every `kind` of BadInput, so counters by kind exist from the start (Prometheus's increase()
# does not count a series' first appearance).
BAD_INPUT_KINDS = ("malformed_json", "invalid", "too_large", "unrouted_channel", "empty", "undecidable")


class BadInput(ValueError):
    """Input that cannot be used; str() says what is wrong, `kind` names the sort of problem
    (a bounded label for metrics and the dead-letter record)."""

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class Lead(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    what: ClassVar[str] = "lead"
    id: Id
    channel: Name = "web"
    priority: Annotated[int, Meta(ge=0, le=9)] = 0
    customer_id: Text | None = None
    value: Annotated[float, Meta(ge=0)] | None = None
    skills: Annotated[list[Name], Meta(max_length=32)] = []
    attributes: Attributes = {}


WINDOW_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)\Z"
Window = Annotated[str, Meta(pattern=WINDOW_PATTERN, description='a window "HH:MM-HH:MM" (00:00 to 24:00)')]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Instant = Annotated[str, Meta(min_length=1, max_length=64, description="an ISO-8601 date and time with a UTC offset")]


class Absence(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Off shift from `from` up to `to` (ISO-8601 with a UTC offset), whatever the hours say."""

    what: ClassVar[str] = "absence"
    from_: Instant = msgspec.field(name="from")
    to: Instant
    reason: Text | None = None


class Schedule(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """When the rep works: weekly `hours` in its IANA `timezone` (a day not listed is a day off; no
    `hours` at all is always on shift), and `absences`. Off shift it gets no new leads, offers,
    claims or drains; the leads it has stay with it. Windows of a day may not overlap and must end
    after they start."""

    what: ClassVar[str] = "schedule"
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] = "UTC"
    # Omitted: always on shift, absences aside; a day not listed is a day off.
    hours: dict[Day, Annotated[list[Window], Meta(max_length=12)]] | None = None
    absences: Annotated[list[Absence], Meta(max_length=100)] = []


class RepProfile(msgspec.Struct, forbid_unknown_fields=True):
    what: ClassVar[str] = "rep profile"
    capacity: Count | Annotated[dict[Name, Count], Meta(min_length=1, max_length=32)]
    name: Text | None = None
    skills: Annotated[dict[Name, Level], Meta(max_length=64)] = {}
    attributes: Attributes = {}
    teams: Annotated[list[Name], Meta(max_length=32)] = []
    schedule: Schedule | None = None


class PresenceChange(msgspec.Struct, forbid_unknown_fields=True):
    what: ClassVar[str] = "presence change"
    status: Literal["online", "away", "offline"]


class CloseRequest(msgspec.Struct, forbid_unknown_fields=True):
    what: ClassVar[str] = "close request"
    outcome: Annotated[str, Meta(min_length=1, max_length=64)]


class ReassignRequest(msgspec.Struct, forbid_unknown_fields=True):
    what: ClassVar[str] = "reassign request"
    rep_id: Id | None = None


class ClaimRequest(msgspec.Struct, forbid_unknown_fields=True):
    what: ClassVar[str] = "claim request"
    rep_id: Id


class ReleaseRequest(msgspec.Struct, forbid_unknown_fields=True):
    what: ClassVar[str] = "release request"
    reason: Annotated[str, Meta(min_length=1, max_length=200)]


T = TypeVar("T")


def decode(raw: bytes, shape: type[T], *, max_bytes: int) -> T:
    if len(raw) > max_bytes:
        raise BadInput(f"body is {len(raw)} bytes; the limit is {max_bytes}", "too_large")
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.ValidationError as exc:
        raise BadInput(f"invalid {shape.what}: {_in_words(str(exc), raw, shape)}") from None
    except msgspec.DecodeError as exc:
        raise BadInput(f"malformed JSON: {_malformed(str(exc), raw)}", "malformed_json") from None


def check_id(value: str, what: str) -> str:
    try:
        return msgspec.convert(value, Id)
    except msgspec.ValidationError:
        raise BadInput(f"{what} id {_shortened(value)!r} must be {ID_WORDS}") from None


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
    weight = profile.attributes.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not MIN_WEIGHT <= weight <= MAX_WEIGHT:
        raise BadInput(f"attributes.weight must be a number from {MIN_WEIGHT:g} to {MAX_WEIGHT:g} "
                       "(the rep's share in weighted queues; 2 takes twice the leads of 1)")
    usable = msgspec.to_builtins(profile)
    # A profile without a schedule is stored as before schedules existed: always on shift.
    if profile.schedule is None:
        del usable["schedule"]
    else:
        try:
            parse_schedule(usable["schedule"])
        except ScheduleError as exc:
            raise BadInput(f"invalid rep profile: {exc}") from None
    return usable


# --- msgspec's messages in the API's words ----------------------------------------------------
# msgspec says what failed as "Expected `int` <= 9 - at `$.priority`", with type names, regexes
# and `[...]` for whichever object entry it was. The path and the declared type at that path are
# all that is taken from it: the words come from the declared type, the key from the input.

QUOTE_LIMIT = 40
_PATH_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+|\.\.\.)\]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JSON_NAMES = {"int": shapes.IntType, "float": shapes.FloatType, "str": shapes.StrType, "bool": shapes.BoolType,
               "array": shapes.ListType, "object": shapes.DictType}


def _malformed(message: str, raw: bytes) -> str:
    if message == "Input data was truncated":
        return "the body is empty" if not raw.strip() else "the JSON text ends before it is complete"
    if message == "Invalid UTF-8 encoded string":
        return "the body is not valid UTF-8"
    return message.removeprefix("JSON is malformed: ")


def _shortened(text: str) -> str:
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


def _in_words(message: str, raw: bytes, shape: type) -> str:
    problem, at, where = message.rpartition(" - at `")
    if not at:
        problem, where = message, "$`"
    where = where.removesuffix("`")
    _, _, container = where.partition("` in `")
    if problem.startswith(("Object missing required field `", "Object contains unknown field `")):
        # The object the field is missing from (or unknown in): the body, or a nested one (a schedule).
        annotation, _, subject = _walk(shape, raw, where) if where != "$" else (shape, None, "")
        name = f"{subject}.{_field_name(problem)}" if subject else _field_name(problem)
        if problem.startswith("Object missing required field `"):
            return f"{name} is required"
        known = ", ".join(field.encode_name for field in msgspec.structs.fields(_member(annotation, msgspec.Struct)))
        return f"unknown field {_quoted_json(name)}; the fields{f' of {subject}' if subject else ''} are {known}"
    if container:
        annotation, value, subject = _walk(shape, raw, container)
        key_type, _ = get_args(_member(annotation, dict))
        bad_key = _first_bad_key(value, key_type)
        given = f" {_quoted_json(bad_key)}" if bad_key is not None else ""
        return f"{subject} has the key{given}; keys must be {_expected(key_type, problem)}"
    annotation, value, subject = _walk(shape, raw, where)
    if problem == "Number out of range" and _accepts_numbers(annotation):
        return f"{subject} is out of range: numbers must be finite and within ±1.7976931348623157e308{_given(value)}"
    return f"{subject} must be {_expected(annotation, problem)}{_given(value)}"


def _accepts_numbers(annotation: Any) -> bool:
    return any(isinstance(_unwrapped(m), shapes.FloatType) for m in _union_members(shapes.type_info(annotation)))


def _field_name(problem: str) -> str:
    return problem[problem.index("`") + 1 : problem.rindex("`")]


def _walk(shape: type, raw: bytes | None, path: str) -> tuple[Any, bytes | None, str]:
    """The declared type, the given JSON text (when it can be found) and the field's name in
    words at a msgspec path such as `$.attributes[...][0]`."""
    annotation: Any = shape
    subject, vague = "", False
    for step in _PATH_STEP.finditer(path.removeprefix("$")):
        field, index = step.groups()
        if field is not None:
            struct = _member(annotation, msgspec.Struct)
            annotation = next(f.type for f in msgspec.structs.fields(struct) if f.encode_name == field)
            raw = _entries(raw).get(field)
            subject = f"{subject}.{field}" if subject else field
        elif index == "...":
            _, annotation = get_args(_member(annotation, dict))
            key, raw = _first_bad_entry(raw, annotation)
            if key is None:
                subject = f"an entry of {subject}"
                vague = True
            else:
                subject += f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{_quoted_json(key)}]"
        else:
            (annotation,) = get_args(_member(annotation, list))
            items = _items(raw)
            raw = items[int(index)] if int(index) < len(items) else None
            subject = f"item {index} of {subject}" if vague else f"{subject}[{index}]"
    return annotation, raw, subject or "the body"


def _bare(annotation: Any) -> Any:
    return annotation.__origin__ if get_origin(annotation) is Annotated else annotation


def _member(annotation: Any, kind: type) -> Any:
    """The member of a (possibly) union type that is a `kind` (a list, a dict, a Struct)."""
    bare = _bare(annotation)
    members = get_args(bare) if get_origin(bare) in (Union, type(int | str)) else (bare,)
    for member in members:
        origin = get_origin(_bare(member)) or _bare(member)
        if isinstance(origin, type) and issubclass(origin, kind):
            return _bare(member)
    raise LookupError(f"no {kind.__name__} in {annotation}")


def _decoded(raw: bytes | None, shape: Any, empty: Any) -> Any:
    if raw is None:
        return empty
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.MsgspecError:
        # Not that container after all, or the text breaks off further on: the message goes
        # without the given value rather than guess.
        return empty


def _entries(raw: bytes | None) -> dict[str, msgspec.Raw]:
    return _decoded(raw, dict[str, msgspec.Raw], {})


def _items(raw: bytes | None) -> list[msgspec.Raw]:
    return _decoded(raw, list[msgspec.Raw], [])


def _fits(raw: bytes, annotation: Any) -> bool:
    try:
        msgspec.json.decode(raw, type=annotation)
    except msgspec.MsgspecError:
        return False
    return True


def _first_bad_entry(raw: bytes | None, annotation: Any) -> tuple[str | None, bytes | None]:
    return next(((key, value) for key, value in _entries(raw).items() if not _fits(value, annotation)), (None, None))


def _first_bad_key(raw: bytes | None, annotation: Any) -> str | None:
    return next((key for key in _entries(raw) if not _fits(msgspec.json.encode(key), annotation)), None)


def _quoted_json(text: str) -> str:
    return msgspec.json.encode(_shortened(text)).decode()


def _given(raw: bytes | None) -> str:
    try:
        # msgspec.Raw checks the JSON's form (not the numbers' range), decode() its UTF-8.
        text = bytes(msgspec.json.decode(raw, type=msgspec.Raw)).decode().strip()
    except (msgspec.DecodeError, UnicodeDecodeError, TypeError):
        # No value found (None), or a whole body that breaks off further on: say nothing of it.
        return ""
    if len(text) <= QUOTE_LIMIT:
        return f"; got {text}"
    if text[0] == '"':
        return f"; got a string of {len(msgspec.json.decode(raw, type=str))} characters"
    if text[0] == "[":
        return f"; got a list of {len(_items(raw))} items"
    if text[0] == "{":
        return f"; got an object of {len(_entries(raw))} entries"
    return f"; got a number written with {len(text)} characters"


def _expected(annotation: Any, problem: str) -> str:
    """What the declared type accepts, in words; of a union, the member msgspec checked when the
    problem names one (`Expected `int` <= 9223372036854775807`)."""
    if get_origin(_bare(annotation)) is Literal:
        return "one of " + ", ".join(map(str, get_args(_bare(annotation))))
    info = shapes.type_info(annotation)
    named = re.match(r"Expected `(\w+)`", problem)
    members = _union_members(info)
    if named and len(members) > 1 and named[1] in _JSON_NAMES:
        chosen = [m for m in members if isinstance(_unwrapped(m), _JSON_NAMES[named[1]])]
        if chosen:
            return _words(chosen[0])
    return _words(info)


def _unwrapped(info: shapes.Type) -> shapes.Type:
    return info.type if isinstance(info, shapes.Metadata) else info


def _union_members(info: shapes.Type) -> list[shapes.Type]:
    info = _unwrapped(info)
    members = info.types if isinstance(info, shapes.UnionType) else (info,)
    return [m for m in members if not isinstance(_unwrapped(m), shapes.NoneType)]


def _between(low: Any, high: Any, unit: str) -> str:
    if low is not None and high is not None:
        return f"{low} to {high} {unit}".rstrip()
    if low is not None:
        return f"at least {low} {unit}".rstrip()
    return f"at most {high} {unit}".rstrip()


def _words(info: shapes.Type) -> str:
    if isinstance(info, shapes.Metadata):
        described = (info.extra_json_schema or {}).get("description")
        return described or _words(info.type)
    if isinstance(info, shapes.UnionType):
        return _union_words(_union_members(info))
    if isinstance(info, shapes.IntType):
        if (info.ge, info.le) == (INT64_MIN, INT64_MAX):
            return f"an integer that fits in signed 64 bits ({INT64_MIN} to {INT64_MAX})"
        if info.ge is None and info.le is None:
            return "an integer"
        return "an integer " + ("from " if info.ge is not None and info.le is not None else "") + _between(info.ge, info.le, "")
    if isinstance(info, shapes.FloatType):
        return "a number" if info.ge is None else f"a number of at least {info.ge:g}"
    if isinstance(info, shapes.StrType):
        if info.min_length is None and info.max_length is None:
            return "a string"
        return f"a string of {_between(info.min_length, info.max_length, 'characters')}"
    if isinstance(info, shapes.BoolType):
        return "true or false"
    if isinstance(info, shapes.ListType):
        size = "" if info.max_length is None else f"of {_between(info.min_length, info.max_length, 'items')} "
        return f"a list {size}".rstrip() + f", each {_words(info.item_type)}"
    if isinstance(info, shapes.DictType):
        size = "" if info.max_length is None else f"of {_between(info.min_length, info.max_length, 'entries')} "
        return f"an object {size}".rstrip() + f", each value {_words(info.value_type)}"
    if isinstance(info, shapes.StructType):
        return "a JSON object"
    raise TypeError(f"no words for {info}: describe it here when a model starts using it")


def _union_words(members: list[shapes.Type]) -> str:
    if len(members) == 1:
        return _words(members[0])
    kinds = [_unwrapped(m) for m in members]
    # In a union of scalars the bounds are noise until one is broken (then that member is named).
    short = {shapes.StrType: "a string", shapes.FloatType: "a number", shapes.BoolType: "true/false"}
    numbers = any(isinstance(k, shapes.FloatType) for k in kinds)
    parts = []
    for member, kind in zip(members, kinds, strict=True):
        if isinstance(kind, shapes.IntType) and numbers:
            continue
        parts.append(short.get(type(kind)) or _words(member))
    return ", ".join(parts[:-1]) + " or " + parts[-1]
