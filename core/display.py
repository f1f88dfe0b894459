"""How values read for a person, the same in every face: sizes, durations, ages, counts, tags,
and file names, with one policy for names that are not UTF-8.

The CLI prints these, the TUI shows them, the engine writes file names into its messages with
`fs_text`; the API gives numbers and leaves the reading to its client. One module, so that
"3.0 MiB", "1 minute and 31 seconds" or "2 folders" read the same wherever they appear.

File names: one rule (`name`, and `fs_text` for a name as bytes) for every face that shows a
stored or scanned path: a backslash reads ``\\\\``, a newline ``\\n`` (tab, return alike),
another control character below 0x80 ``\\xNN``, a byte that is not UTF-8 ``\\xNN`` (always
80-ff), any other unprintable character (C1 controls, line separators) ``\\uNNNN``. So a name
can neither break a line nor send a terminal escape, and no two names read alike: the name
`a\\nb` (backslash, n) reads ``a\\\\nb``, the name with a newline ``a\\nb``. `clean`, for
free text (messages, which carry their names already escaped), escapes unprintable characters
the same way and leaves backslashes as they are.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import humanize

from core.utc import CLOCK_SKEW, utc

MISSING = "-"


# --- sizes ---------------------------------------------------------------------------------


def size(n: float | None) -> str:
    """'3.0 MiB' (binary units, one decimal)."""
    return MISSING if n is None else humanize.naturalsize(n, binary=True, format="%.1f")


def short_size(n: int | None) -> str:
    """'11.8M': sizes in a narrow column."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}P"


def rate(bps: float | None) -> str:
    """'5.0 MiB/s'; nothing measured reads '-'."""
    return f"{size(bps)}/s" if bps else MISSING


def speed(covered_bytes: int, bytes_read: int, seconds: float) -> str:
    """A backup's speed as a person reads it: the data it covers per second (an incremental
    that reuses 450 MiB in 2 s covers 225 MiB/s), and what it actually read."""
    if not seconds:
        return MISSING
    return f"{rate(covered_bytes / seconds)} of data, {rate(bytes_read / seconds)} read"


# --- times ---------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """'120 ms', '4.2 s', '1 minute and 31 seconds' (rounded to the second from a minute on)."""
    if seconds is None:
        return MISSING
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return humanize.precisedelta(timedelta(seconds=round(seconds)), format="%0.0f")


def age(when: datetime | None, now: datetime) -> str:
    """'3 hours ago'; a time a little in the future (clock skew) reads 'just now', one
    further ahead '3 hours in the future', so a wrong clock shows rather than hides."""
    if when is None:
        return "never"
    delta = utc(now) - utc(when)
    if delta < -CLOCK_SKEW:
        return f"{humanize.naturaldelta(-delta)} in the future"
    if delta < timedelta(seconds=5):
        return "just now"
    return f"{humanize.naturaldelta(delta)} ago"


def short_age(when: datetime | None, now: datetime) -> str:
    """'3h ago', for a narrow column ('in 3h' beyond the clock skew `age` allows)."""
    if when is None:
        return "never"
    seconds = (utc(now) - utc(when)).total_seconds()
    if seconds < -CLOCK_SKEW.total_seconds():
        return "in " + short_age(now, when).removesuffix(" ago")
    for unit, span in (("y", 31536000), ("mo", 2592000), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= span:
            return f"{int(seconds // span)}{unit} ago"
    return "just now"


def exact(when: datetime | None) -> str:
    """'2026-11-29 03:12:03 UTC'."""
    return MISSING if when is None else utc(when).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stamp(when: datetime | None, now: datetime) -> str:
    """'2026-11-29 03:12:03 UTC (5 minutes ago)'."""
    return MISSING if when is None else f"{exact(when)} ({age(when, now)})"


# --- counts and lists ----------------------------------------------------------------------


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 file', '3 files', '1,200 directories' (with `many` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def listing(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def tags_text(tags: dict[str, str], limit: int | None = None) -> str:
    """'env=prod, pinned' (a tag without a value is its key alone, as the query grammar
    writes it), sorted; cut to `limit` characters with '…'. No tags read ''."""
    out = ", ".join(f"{k}={v}" if v else k for k, v in sorted(tags.items()))
    return out if limit is None or len(out) <= limit else out[: limit - 1] + "…"


def short_id(backup_id: str, width: int = 20) -> str:
    return backup_id if len(backup_id) <= width else backup_id[: width - 1] + "…"


# --- file names ----------------------------------------------------------------------------


def fs_text(raw: bytes) -> str:
    """A file name as bytes, for a message or a face: `name` of its text."""
    return name(raw.decode("utf-8", "surrogateescape"))


def name(text: str) -> str:
    """A file name (a str; a byte that is not UTF-8 as a surrogate escape) on one line, so
    that no two names read alike: backslash escaped too (see the module's docstring)."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escaped(ch) if ch == "\\" or not ch.isprintable() else ch for ch in text)


def clean(text: object) -> str:
    """A value safe to show on one line: unprintable characters escaped as `name` escapes
    them, backslashes left (a message's names arrive escaped by `name` already)."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in s)


_SHORT = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(ch: str) -> str:
    """One character as its escape: \\xNN is an ASCII control or a byte not UTF-8 (a
    surrogate escape), never a code point from 0x80, which reads \\uNNNN (or \\UNNNNNNNN)."""
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


#: Unicode categories a line of a unit, a crontab or a setting cannot carry as data: control
#: characters (newline, CR, tab...), line and paragraph separators, and lone surrogates
#: (bytes of a path that are not UTF-8).
_NOT_DATA = frozenset({"Cc", "Zl", "Zp", "Cs"})


def not_data(value: str) -> str | None:
    """The first character of `value` that would end or break a line it is written into
    (see _NOT_DATA), or None."""
    import unicodedata

    return next((c for c in value if unicodedata.category(c) in _NOT_DATA), None)


def home_short(path: str | os.PathLike[str]) -> str:
    """`/home/me/x` -> `~/x`: shorter, and the same on every machine (screenshots)."""
    text = str(path)
    home = os.path.expanduser("~")
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home) :]
    return text
