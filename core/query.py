"""The one grammar and matcher of backup list queries, shared by the CLI, the TUI and the API.

Every face parses its filters with these functions and matches with `Query.matches`, so a
query means the same everywhere (README, "list": the grammar is documented once there).

- type, status: enum values; a comma list and unambiguous prefixes are accepted (``inc``).
- tag: ``key`` (any value of that key) or ``key=value`` (exactly that value).
- since / until (`parse_when`): ``now``, ``today``, ``yesterday``; a relative age back from now
  (``30m``, ``1.5h``, ``7d``, ``2w``, ``90s``, ``30 min ago``); a month (``2026-11``), a day
  (``2026-11-29``) or an ISO datetime with or without zone (UTC when none). An `until` of a
  day or a month means its end, so it includes that day or month.
- host: the host that made the backup, exactly (a repository shared by several hosts).
- text: words, each a case-insensitive substring of the id, type, status, error message, host,
  user or a ``key=value`` tag; all must occur.

The bar form (`parse_text`, the TUI's filter bar) writes the same filters as ``key:value``
tokens: ``type:``/``t:``, ``status:``/``s:``, ``tag:``, ``since:``/``after:``,
``until:``/``before:``, ``date:``/``on:`` (since and until of one day or month), ``host:``;
other words
are text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from core.utc import utc

if TYPE_CHECKING:  # the CLI's parser uses the grammar (parse_when) before any model
    from core.models import BackupMetadata, BackupStatus, BackupType, ListFilter

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)(?:\s+ago)?$", re.IGNORECASE)
_UNITS = {"s": "seconds", "sec": "seconds", "m": "minutes", "min": "minutes", "h": "hours"}
_UNITS |= {"d": "days", "w": "weeks"}
_MONTH = re.compile(r"^\d{4}-\d{2}$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
E = TypeVar("E", bound=Enum)
WHEN_HELP = "an ISO date or datetime (2026-11-29, 2026-11, 2026-11-29T03:00), or 30m, 12h, 7d, 2w"


def parse_when(text: str, *, end: bool = False, now: datetime | None = None) -> datetime:
    """A point in time, always timezone-aware; with `end`, a day or month means its last
    instant (so that an `until` includes it). Raises ValueError with one readable line."""
    now = utc(now or datetime.now(UTC))
    raw = text.strip()
    low = raw.lower()
    if low == "now":
        return now
    if low in ("today", "yesterday"):
        return _day_bound(now.date() - timedelta(days=low == "yesterday"), end=end)
    if match := _RELATIVE.match(raw):
        try:
            return now - timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
        except OverflowError:  # before the year 1 (or past timedelta's own range)
            raise ValueError(f"invalid date {text!r}: too far back") from None
    try:
        if _MONTH.match(raw):
            return _month_bound(int(raw[:4]), int(raw[5:]), end=end)
        if _DAY.match(raw):
            return _day_bound(date.fromisoformat(raw), end=end)
        return utc(datetime.fromisoformat(raw))
    except ValueError:
        raise ValueError(f"invalid date {text!r}: use {WHEN_HELP}") from None


def _day_bound(day: date, *, end: bool) -> datetime:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1, microseconds=-1) if end else start


def _month_bound(year: int, month: int, *, end: bool) -> datetime:
    first = date(year, month, 1)
    if not end:
        return _day_bound(first, end=False)
    following = date(year + month // 12, month % 12 + 1, 1)
    return _day_bound(following - timedelta(days=1), end=True)


def parse_tag(text: str) -> tuple[str, str | None]:
    """``key=value`` -> (key, value); a bare ``key`` -> (key, None): any value of it."""
    key, sep, value = text.partition("=")
    if not key:
        raise ValueError(f"invalid tag {text!r}: use KEY or KEY=VALUE")
    return key, value if sep else None


def parse_enum(enum: type[E], text: str) -> frozenset[E]:
    """A comma list of values or prefixes of them (``inc``, ``full,snap``)."""
    found: set[E] = set()
    for part in filter(None, text.lower().split(",")):
        hits = {m for m in enum if str(m.value).startswith(part)}
        if not hits:
            raise ValueError(f"no {enum.__name__.removeprefix('Backup').lower()} {part!r}")
        found |= hits
    return frozenset(found)


@dataclass(frozen=True)
class Query:
    """Filters combined with AND; an empty set or None means no restriction."""

    types: frozenset[BackupType] = frozenset()
    statuses: frozenset[BackupStatus] = frozenset()
    tags: tuple[tuple[str, str | None], ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    words: tuple[str, ...] = ()
    hosts: frozenset[str] = frozenset()

    @property
    def is_empty(self) -> bool:
        return not (
            self.types
            or self.statuses
            or self.tags
            or self.since
            or self.until
            or self.words
            or self.hosts
        )

    @classmethod
    def from_filter(cls, f: ListFilter) -> Query:
        """The query of the engine's `ListFilter` (one type, status and tag at most)."""
        return cls(
            types=frozenset([f.type]) if f.type is not None else frozenset(),
            statuses=frozenset([f.status]) if f.status is not None else frozenset(),
            tags=(parse_tag(f.tag),) if f.tag else (),
            since=utc(f.since) if f.since is not None else None,
            until=utc(f.until) if f.until is not None else None,
            words=tuple(f.text.lower().split()) if f.text else (),
            hosts=frozenset([f.host]) if f.host else frozenset(),
        )

    def matches(self, meta: BackupMetadata) -> bool:
        if self.types and meta.type not in self.types:
            return False
        if self.statuses and meta.status not in self.statuses:
            return False
        if self.hosts and meta.host not in self.hosts:
            return False
        for key, value in self.tags:
            if key not in meta.tags or (value is not None and meta.tags[key] != value):
                return False
        created = utc(meta.created_at)
        if self.since is not None and created < self.since:
            return False
        if self.until is not None and created > self.until:
            return False
        if not self.words:
            return True
        hay = _haystack(meta)
        return all(w in hay for w in self.words)


def _haystack(meta: BackupMetadata) -> str:
    parts = [meta.id, meta.type.value, meta.status.value, meta.error_message or ""]
    parts += [meta.host or "", meta.user or ""]
    return " ".join(parts + [f"{k}={v}" for k, v in meta.tags.items()]).lower()


def matches(meta: BackupMetadata, f: ListFilter) -> bool:
    """Whether a backup passes the engine's `ListFilter` (the rule of `Query.matches`)."""
    return Query.from_filter(f).matches(meta)


_KEYS = {"type": "type", "t": "type", "status": "status", "s": "status", "tag": "tag"}
_KEYS |= {"since": "since", "after": "since", "until": "until", "before": "until"}
_KEYS |= {"date": "date", "on": "date", "host": "host"}


def parse_text(text: str, now: datetime) -> tuple[Query, tuple[str, ...]]:
    """The bar form; tokens that do not parse are returned as errors and ignored, and a key
    still waiting for its value (``status:``) is skipped, as it is while being typed."""
    from core.models import BackupStatus, BackupType

    types: set[BackupType] = set()
    statuses: set[BackupStatus] = set()
    tags: list[tuple[str, str | None]] = []
    since: datetime | None = None
    until: datetime | None = None
    words: list[str] = []
    hosts: set[str] = set()
    errors: list[str] = []
    for token in text.split():
        key, sep, value = token.partition(":")
        kind = _KEYS.get(key.lower()) if sep else None
        if kind is None:
            words.append(token.lower())
            continue
        if not value:
            continue
        try:
            if kind == "type":
                types |= parse_enum(BackupType, value)
            elif kind == "status":
                statuses |= parse_enum(BackupStatus, value)
            elif kind == "tag":
                tags.append(parse_tag(value))
            elif kind == "host":
                hosts.add(value)
            if kind in ("since", "date"):
                since = parse_when(value, now=now)
            if kind in ("until", "date"):
                until = parse_when(value, end=True, now=now)
        except ValueError as exc:
            errors.append(str(exc))
    query = Query(
        frozenset(types),
        frozenset(statuses),
        tuple(tags),
        since,
        until,
        tuple(words),
        frozenset(hosts),
    )
    return query, tuple(errors)
