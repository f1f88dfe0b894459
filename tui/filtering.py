"""The filter bar's little language, parsed and matched locally.

The table narrows on every keystroke, so matching runs in memory on the list already loaded
(no call into the core per key). The semantics follow `core.models.ListFilter`, with two
concessions to typing: enum values and tag values match by prefix (``type:inc``), and a
half-typed token that does not parse yet is reported, not applied.

    type:full,incremental  status:failed  tag:env=prod  tag:nightly
    since:2026-11-01  until:2026-11-30  date:2026-11-29  since:7d  since:12h
    any other words: substrings of id, tags, name, error message (all must match)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from core.models import BackupMetadata, BackupStatus, BackupType
from tui.format import utc

_KEYS = {
    "type": "type",
    "t": "type",
    "status": "status",
    "s": "status",
    "tag": "tag",
    "since": "since",
    "after": "since",
    "until": "until",
    "before": "until",
    "date": "date",
    "on": "date",
}
_RELATIVE = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class TableFilter:
    types: frozenset[BackupType] = frozenset()
    statuses: frozenset[BackupStatus] = frozenset()
    tags: tuple[tuple[str, str | None], ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    words: tuple[str, ...] = ()
    errors: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_empty(self) -> bool:
        return not (
            self.types or self.statuses or self.tags or self.since or self.until or self.words
        )

    def matches(self, meta: BackupMetadata) -> bool:
        if self.types and meta.type not in self.types:
            return False
        if self.statuses and meta.status not in self.statuses:
            return False
        for key, value in self.tags:
            if key not in meta.tags:
                return False
            if value is not None and not meta.tags[key].lower().startswith(value):
                return False
        created = utc(meta.created_at)
        if self.since is not None and created < self.since:
            return False
        if self.until is not None and created > self.until:
            return False
        if self.words:
            hay = " ".join(
                [
                    meta.id,
                    *(f"{k}={v}" for k, v in meta.tags.items()),
                    meta.error_message or "",
                ]
            ).lower()
            if not all(w in hay for w in self.words):
                return False
        return True

    def describe(self) -> str:
        """The active filter in one short line, as the table's border shows it."""
        parts: list[str] = []
        if self.types:
            parts.append("type=" + ",".join(sorted(t.value for t in self.types)))
        if self.statuses:
            parts.append("status=" + ",".join(sorted(s.value for s in self.statuses)))
        parts += [f"tag={k}={v}" if v is not None else f"tag={k}" for k, v in self.tags]
        if self.since:
            parts.append(f"since={self.since:%Y-%m-%d %H:%M}")
        if self.until:
            parts.append(f"until={self.until:%Y-%m-%d %H:%M}")
        if self.words:
            parts.append(repr(" ".join(self.words)))
        return " ".join(parts)


def _enum_prefix(enum: type[BackupType] | type[BackupStatus], text: str) -> set:
    found = set()
    for part in filter(None, text.lower().split(",")):
        hits = {m for m in enum if m.value.startswith(part)}
        if not hits:
            raise ValueError(f"no {enum.__name__.removeprefix('Backup').lower()} {part!r}")
        found |= hits
    return found


def _moment(text: str, now: datetime, *, end: bool) -> datetime:
    """A date, a datetime, 'today', 'yesterday' or a relative age like 7d / 12h / 30m."""
    low = text.lower()
    if m := _RELATIVE.match(low):
        return utc(now) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if low in ("today", "yesterday"):
        day = utc(now).date() - timedelta(days=1 if low == "yesterday" else 0)
        return _day_bound(day, end=end)
    if re.fullmatch(r"\d{4}-\d{2}", low):
        year, month = map(int, low.split("-"))
        first = date(year, month, 1)
        if not end:
            return _day_bound(first, end=False)
        nxt = date(year + month // 12, month % 12 + 1, 1)
        return _day_bound(nxt - timedelta(days=1), end=True)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", low):
        return _day_bound(date.fromisoformat(low), end=end)
    try:
        return utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(f"bad date {text!r} (YYYY-MM-DD, 7d, 12h, today)") from None


def _day_bound(day: date, *, end: bool) -> datetime:
    return datetime.combine(day, time.max if end else time.min, tzinfo=UTC)


def awaiting_value(text: str) -> bool:
    """Whether the last token is a key still waiting for its value (`status:`), as it is
    for one keystroke each time a key is typed."""
    tokens = text.split()
    return bool(tokens) and not text[-1:].isspace() and tokens[-1].endswith(":")


def parse_filter(text: str, now: datetime) -> TableFilter:
    """Parse the bar's text; tokens that do not parse are listed in `errors` and ignored."""
    types: set[BackupType] = set()
    statuses: set[BackupStatus] = set()
    tags: list[tuple[str, str | None]] = []
    since: datetime | None = None
    until: datetime | None = None
    words: list[str] = []
    errors: list[str] = []
    for token in text.split():
        key, sep, value = token.partition(":")
        kind = _KEYS.get(key.lower()) if sep else None
        if kind is None:
            words.append(token.lower())
            continue
        if not value:
            continue  # still being typed
        try:
            if kind == "type":
                types |= _enum_prefix(BackupType, value)
            elif kind == "status":
                statuses |= _enum_prefix(BackupStatus, value)
            elif kind == "tag":
                tkey, eq, tval = value.partition("=")
                tags.append((tkey, tval.lower() if eq else None))
            elif kind == "since":
                since = _moment(value, now, end=False)
            elif kind == "until":
                until = _moment(value, now, end=True)
            else:  # date: that whole day (or month)
                since = _moment(value, now, end=False)
                until = _moment(value, now, end=True)
        except ValueError as exc:
            errors.append(str(exc))
    return TableFilter(
        types=frozenset(types),
        statuses=frozenset(statuses),
        tags=tuple(tags),
        since=since,
        until=until,
        words=tuple(words),
        errors=tuple(errors),
    )
