"""The filter bar: the grammar of `core.query` in its bar form, matched locally.

The table narrows on every keystroke, so matching runs in memory on the list already loaded
(no call into the core per key), with `core.query.Query.matches`, the rule the CLI and the API
use too. A half-typed token that does not parse yet is reported, not applied.

    type:full,incremental  status:failed  tag:env=prod  tag:nightly
    since:2026-11-01  until:2026-11-30  date:2026-11-29  since:7d  since:1.5h  host:web-01
    any other words: substrings of id, type, status, tags, error message (all must match)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from core.query import Query, parse_text


@dataclass(frozen=True)
class TableFilter(Query):
    """A `Query` and the errors of the tokens that did not parse."""

    errors: tuple[str, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        """The active filter in one short line, as the table's border shows it."""
        parts: list[str] = []
        if self.types:
            parts.append("type=" + ",".join(sorted(t.value for t in self.types)))
        if self.statuses:
            parts.append("status=" + ",".join(sorted(s.value for s in self.statuses)))
        parts += [f"tag={k}={v}" if v is not None else f"tag={k}" for k, v in self.tags]
        parts += [f"host={h}" for h in sorted(self.hosts)]
        if self.since:
            parts.append(f"since={self.since:%Y-%m-%d %H:%M}")
        if self.until:
            parts.append(f"until={self.until:%Y-%m-%d %H:%M}")
        if self.words:
            parts.append(repr(" ".join(self.words)))
        return " ".join(parts)


def awaiting_value(text: str) -> bool:
    """Whether the last token is a key still waiting for its value (`status:`), as it is
    for one keystroke each time a key is typed."""
    tokens = text.split()
    return bool(tokens) and not text[-1:].isspace() and tokens[-1].endswith(":")


def parse_filter(text: str, now: datetime) -> TableFilter:
    """Parse the bar's text; tokens that do not parse are listed in `errors` and ignored."""
    query, errors = parse_text(text, now)
    return TableFilter(
        types=query.types,
        statuses=query.statuses,
        tags=query.tags,
        since=query.since,
        until=query.until,
        words=query.words,
        hosts=query.hosts,
        errors=errors,
    )
