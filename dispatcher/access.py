"""Who may call what: the principals behind the API tokens, and the one table of rights per endpoint.

Tokens come from `DISPATCHER_API_TOKENS` (`ROLE:TOKEN`, `rep:REP_ID:TOKEN`, or a bare token, which is
admin) and from the file named by `DISPATCHER_API_TOKENS_FILE`, which holds only SHA-256 digests
(`ROLE:sha256:HEX` or `rep:REP_ID:sha256:HEX`, then an optional name). Both are kept as digests, so
a presented token is hashed once and compared digest to digest, and no plaintext token need sit on
a production disk. The middleware in dispatcher/http.py enforces what this module decides.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dispatcher.models import BadInput, check_id
from dispatcher.settings import Settings

ROLES = ("ingest", "rep", "supervisor", "admin")
ANONYMOUS = "anonymous"
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_DIGEST_MARK = ":sha256:"
_FILE_FORMAT = "ROLE:sha256:HEX or rep:REP_ID:sha256:HEX, then an optional name"

LeadOwner = Callable[[str], Awaitable[str | None]]


class AccessError(ValueError):
    """The token configuration cannot be used; the worker refuses to start with this text."""


@dataclass(frozen=True)
class Principal:
    role: str
    rep_id: str | None = None
    name: str | None = None

    @property
    def actor(self) -> str:
        """Who acted, as the lead's history and the rep events record it: "supervisor:ana", "rep:r7"."""
        return ":".join(part for part in (self.role, self.rep_id, self.name) if part)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Keyring:
    """The known token digests and whom each one stands for. Empty means the API runs open."""

    def __init__(self, entries: list[tuple[str, Principal, str]]) -> None:
        seen: dict[str, str] = {}
        for known, _, origin in entries:
            if known in seen:
                raise AccessError(f"the same token is configured twice ({seen[known]} and {origin})")
            seen[known] = origin
        self._entries = [(known.encode(), principal) for known, principal, _ in entries]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def identify(self, token: str) -> Principal | None:
        presented = digest(token).encode()
        found = None
        # Every entry is compared, so the time taken does not tell which one matched.
        for known, principal in self._entries:
            if hmac.compare_digest(presented, known):
                found = principal
        return found


def _rep_id(value: str, where: str) -> str:
    try:
        return check_id(value, "rep")
    except BadInput as exc:
        raise AccessError(f"{where}: {exc}") from None


def _name(value: str, where: str) -> str:
    if not _NAME.fullmatch(value):
        raise AccessError(f"{where}: the name {value!r} must be 1..64 characters of A-Z a-z 0-9 . _ @ -")
    return value


def parse_env_entry(entry: str, where: str) -> tuple[str, Principal]:
    """One entry of DISPATCHER_API_TOKENS as (digest, principal). A role prefix is read only when it
    names a role, so older bare tokens keep working as admin. Errors never repeat the token."""
    role, separator, rest = entry.partition(":")
    if not separator or role not in ROLES:
        return digest(entry), Principal("admin")
    if role == "rep":
        # Rep ids may hold ':' themselves; generated tokens never do, so the token is the last part.
        rep_id, separator, token = rest.rpartition(":")
        if not separator or not rep_id or not token:
            raise AccessError(f"{where}: a rep token is written rep:REP_ID:TOKEN")
        return digest(token), Principal("rep", _rep_id(rep_id, where))
    if not rest:
        raise AccessError(f"{where}: the token after '{role}:' is empty")
    return digest(rest), Principal(role)


def parse_file_line(line: str, where: str) -> tuple[str, Principal] | None:
    """One line of the tokens file as (digest, principal); None for a blank or comment line."""
    fields = line.split("#", 1)[0].split()
    if not fields:
        return None
    if len(fields) > 2:
        raise AccessError(f"{where}: expected {_FILE_FORMAT}, found {len(fields)} words")
    credential, name = fields[0], (fields[1] if len(fields) == 2 else None)
    owner, separator, hex_digest = credential.partition(_DIGEST_MARK)
    if not separator:
        raise AccessError(f"{where}: no sha256 digest; the file holds {_FILE_FORMAT}, never a token itself "
                          "(`dispatcher token new` prints the line to add)")
    if not _HEX_DIGEST.fullmatch(hex_digest.lower()):
        raise AccessError(f"{where}: the digest after 'sha256:' must be 64 hex digits")
    role, _, rep_id = owner.partition(":")
    if role not in ROLES:
        raise AccessError(f"{where}: unknown role {role!r}; roles: {', '.join(ROLES)}")
    if role == "rep" and not rep_id:
        raise AccessError(f"{where}: a rep token names its rep: rep:REP_ID:sha256:HEX")
    if role != "rep" and rep_id:
        raise AccessError(f"{where}: only rep tokens name a rep id ({role} tokens are {role}:sha256:HEX)")
    return hex_digest.lower(), Principal(role, _rep_id(rep_id, where) if rep_id else None,
                                         _name(name, where) if name is not None else None)


def _file_entries(path: Path) -> list[tuple[str, Principal, str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AccessError(f"cannot read the tokens file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number} of the tokens file {path}"
        if parsed := parse_file_line(line, where):
            entries.append((*parsed, where))
    return entries


def load_keyring(settings: Settings) -> Keyring:
    entries = []
    for number, entry in enumerate(settings.api_tokens, start=1):
        where = f"entry {number} of DISPATCHER_API_TOKENS"
        entries.append((*parse_env_entry(entry, where), where))
    if settings.api_tokens_file is not None:
        entries.extend(_file_entries(settings.api_tokens_file))
    return Keyring(entries)


def new_token(role: str, rep_id: str | None, name: str | None) -> tuple[str, str]:
    """A fresh token and the tokens-file line that admits it."""
    if role not in ROLES:
        raise AccessError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if (role == "rep") != bool(rep_id):
        raise AccessError("a rep token needs --rep REP_ID" if role == "rep" else "only rep tokens take --rep")
    owner = f"rep:{_rep_id(rep_id, '--rep')}" if rep_id else role
    token = secrets.token_urlsafe(32)
    return token, f"{owner}{_DIGEST_MARK}{digest(token)}" + (f" {_name(name, '--name')}" if name is not None else "")


# A browser cannot put a header on a page it navigates to or on an EventSource, so these reads may
# carry the token as ?access_token= (it then shows in access logs). Nowhere else: a token in a URL
# leaks through logs, history and referrers.
QUERY_TOKEN_PATHS = frozenset({"/", "/v1/live/stream"})


def accepts_query_token(method: str, path: str) -> bool:
    return method in ("GET", "HEAD") and (path in QUERY_TOKEN_PATHS or path.endswith("/events"))


@dataclass(frozen=True)
class Rule:
    """Who may make one call: admin always, the roles named, and a rep token for its own rep
    (`rep_scope="rep"`: the path's rep_id is its own) or for a lead assigned to it (`"lead"`)."""

    roles: frozenset[str] = frozenset()
    rep_scope: str | None = None

    def describe(self) -> str:
        allowed = sorted(self.roles | {"admin"}, key=ROLES.index)
        own = {"rep": "a rep token for its own rep id", "lead": "a rep token for a lead assigned or offered to it"}
        return " or ".join([*allowed, *([own[self.rep_scope]] if self.rep_scope else [])])


_SUPERVISION = frozenset({"supervisor"})
ADMIN_ONLY = Rule()
# The table, by method and route pattern. A route missing here is admin-only, so an endpoint added
# without a decision is closed, not open (tests/dispatcher/test_access.py checks every route has one).
RULES: Mapping[tuple[str, str], Rule] = {
    ("POST", "/v1/leads"): Rule(frozenset({"ingest"})),
    ("GET", "/v1/leads/{lead_id}"): Rule(_SUPERVISION, "lead"),
    ("POST", "/v1/leads/{lead_id}/close"): Rule(_SUPERVISION, "lead"),
    ("POST", "/v1/leads/{lead_id}/reassign"): Rule(_SUPERVISION),
    # The step checks again, atomically, that the lead is still offered to the token's rep.
    ("POST", "/v1/leads/{lead_id}/accept"): Rule(_SUPERVISION, "lead"),
    ("POST", "/v1/leads/{lead_id}/reject"): Rule(_SUPERVISION, "lead"),
    ("POST", "/v1/leads/{lead_id}/release"): Rule(_SUPERVISION, "lead"),
    ("POST", "/v1/leads/{lead_id}/contact"): Rule(_SUPERVISION, "lead"),
    # A rep token lists only what its rep may claim, and claims only for its rep (views.py).
    ("GET", "/v1/pool"): Rule(frozenset({"supervisor", "rep"})),
    ("POST", "/v1/pool/{lead_id}/claim"): Rule(frozenset({"supervisor", "rep"})),
    ("GET", "/v1/reps"): Rule(_SUPERVISION),
    ("GET", "/v1/reps/{rep_id}"): Rule(_SUPERVISION, "rep"),
    ("PUT", "/v1/reps/{rep_id}"): ADMIN_ONLY,
    ("GET", "/v1/reps/{rep_id}/leads"): Rule(_SUPERVISION, "rep"),
    ("POST", "/v1/reps/{rep_id}/presence"): Rule(_SUPERVISION, "rep"),
    ("GET", "/v1/reps/{rep_id}/history"): Rule(_SUPERVISION, "rep"),
    ("GET", "/v1/reps/{rep_id}/events"): Rule(_SUPERVISION, "rep"),
    ("GET", "/"): Rule(_SUPERVISION),
    ("GET", "/v1/live"): Rule(_SUPERVISION),
    ("GET", "/v1/live/stream"): Rule(_SUPERVISION),
    ("GET", "/v1/routing"): Rule(_SUPERVISION),
    ("PUT", "/v1/routing"): ADMIN_ONLY,
    ("GET", "/v1/routing/history"): Rule(_SUPERVISION),
    ("GET", "/v1/stats/fairness"): Rule(_SUPERVISION),
}


def rule_for(method: str, pattern: str) -> Rule:
    return RULES.get(("GET" if method == "HEAD" else method, pattern), ADMIN_ONLY)


async def refusal(principal: Principal, method: str, pattern: str, path: str, params: Mapping[str, str],
                  lead_owner: LeadOwner) -> str | None:
    """None when `principal` may make this call; otherwise why not, in words. `lead_owner` is asked
    only for a rep token on a lead's route (one Redis read)."""
    rule = rule_for(method, pattern)
    if principal.role == "admin" or principal.role in rule.roles:
        return None
    if principal.role == "rep" and rule.rep_scope == "rep":
        if params.get("rep_id") == principal.rep_id:
            return None
        return f"this token is bound to rep {principal.rep_id} and may not act for rep {params.get('rep_id')}"
    if principal.role == "rep" and rule.rep_scope == "lead":
        lead_id = params.get("lead_id", "")
        if await lead_owner(lead_id) == principal.rep_id:
            return None
        return f"this token is bound to rep {principal.rep_id} and lead {lead_id} is not assigned or offered to it"
    return f"this token's role {principal.role} may not {method} {path}; that takes {rule.describe()}"
