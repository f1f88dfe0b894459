"""core.display: how values read in every face. The same value reads the same in the CLI and
the TUI (they import these), and a name that is not UTF-8 reads the same whether it arrives
as bytes or as a surrogate-escaped str."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from cli import render
from cli.progress_bar import render_line
from core import display
from core.models import ProgressEvent
from tui import format as fmt

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


def test_the_faces_use_the_one_module():
    for name in ("size", "duration", "plural", "clean"):
        assert getattr(render, name) is getattr(display, name), name
    for name in ("size", "duration", "plural", "age", "exact", "short_size", "home_short"):
        assert getattr(fmt, name) is getattr(display, name), name


def test_sizes_durations_and_counts():
    assert display.size(3 * 1024 * 1024) == "3.0 MiB" and display.size(None) == "-"
    assert display.rate(0) == "-" and display.rate(5 * 1024 * 1024) == "5.0 MiB/s"
    assert display.duration(0.25) == "250 ms" and display.duration(4.24) == "4.2 s"
    # rounded, not cut: 90.6 s is a minute and 31 seconds, 3599.6 s an hour
    assert display.duration(90.6) == "1 minute and 31 seconds"
    assert display.duration(3599.6) == "1 hour"
    assert display.plural(1, "folder") == "1 folder" and display.plural(0, "folder") == "0 folders"
    assert display.plural(1200, "directory", "directories") == "1,200 directories"
    assert display.listing(["a", "b", "c"]) == "a, b and c"


def test_ages_and_stamps():
    assert display.age(NOW - timedelta(hours=3), NOW) == "3 hours ago"
    assert display.age(NOW + timedelta(minutes=2), NOW) == "just now"  # clock skew
    # a clock far ahead shows as such: not hidden behind "just now"
    assert display.age(NOW + timedelta(hours=3), NOW) == "3 hours in the future"
    assert display.short_age(NOW + timedelta(days=2), NOW) == "in 2d"
    assert display.short_age(NOW + timedelta(minutes=2), NOW) == "just now"
    assert display.age(None, NOW) == "never"
    assert display.short_age(NOW - timedelta(days=2), NOW) == "2d ago"
    when = datetime(2026, 11, 29, 3, 12, 3, tzinfo=UTC)
    assert display.stamp(when, when + timedelta(minutes=5)) == (
        "2026-11-29 03:12:03 UTC (5 minutes ago)"
    )
    naive = datetime(2026, 11, 29, 3, 12, 3)  # old metadata: taken as UTC
    assert display.exact(naive) == "2026-11-29 03:12:03 UTC"


def test_tags_read_as_the_query_grammar_writes_them():
    tags = {"env": "prod", "pinned": ""}
    assert display.tags_text(tags) == "env=prod, pinned"
    assert render.fmt_tags(tags) == "env=prod, pinned" and render.fmt_tags({}) == "-"
    assert fmt.tags_text({"k": "v" * 100}).endswith("…")  # the TUI's column width


def test_a_name_that_is_not_utf8_reads_the_same_as_bytes_and_as_str():
    raw = b"caf\xe9\nlatin1.txt"
    as_str = os.fsdecode(raw)  # how the engine carries it as a str (surrogateescape)
    shown = display.clean(display.fs_text(raw))
    assert shown == display.clean(as_str) == "caf\\xe9\\nlatin1.txt"
    line = render_line(
        ProgressEvent(operation="create", project_id="p", phase="reading", current_path=as_str),
        120,
    )
    assert line.endswith("caf\\xe9\\nlatin1.txt")  # the progress bar shows it so too


def test_a_backups_speed_says_the_data_it_covers_and_what_it_read():
    """An incremental that reuses 450 MiB and reads 1 MiB in 2 s is not '512 KiB/s'."""
    from core.display import speed

    assert speed(450 * 1024**2, 1024**2, 2.0) == "225.0 MiB/s of data, 512.0 KiB/s read"
    assert speed(10, 10, 0) == "-"
