"""The one rule for times without a zone: they are UTC, the zone of every time the engine
stores. Applied where a time enters (every model's datetime field, typed times), so that
comparing and sorting times never mixes naive and aware ones. And how far another host's
clock may run ahead of this one's (CLOCK_SKEW), for every rule that allows for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

#: How far ahead of this host's clock another host's may run: a lock's refresh time beyond it
#: is judged by its object's mtime, a backup's given time beyond it is refused, and a time
#: shown beyond it reads as in the future rather than "just now".
CLOCK_SKEW = timedelta(minutes=5)


def utc(value: datetime) -> datetime:
    """`value` with UTC as its zone when it has none; an aware time as it is."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
