"""The one rule for times without a zone: they are UTC, the zone of every time the engine
stores. Applied where a time enters (every model's datetime field, typed times), so that
comparing and sorting times never mixes naive and aware ones."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: datetime) -> datetime:
    """`value` with UTC as its zone when it has none; an aware time as it is."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
