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
    for name in ("size", "duration", "plural", "clean", "name"):
        assert getattr(render, name) is getattr(display, name), name
    for name in ("size", "duration", "plural", "age", "exact", "short_size", "home_short", "name"):
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


def _unescape(shown: str) -> str:
    """The inverse of display.name: that it exists proves no two names read alike."""
    out, i = [], 0
    short = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
    while i < len(shown):
        ch = shown[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        kind = shown[i + 1]
        if kind in short:
            out.append(short[kind])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}[kind]
        code = int(shown[i + 2 : i + 2 + width], 16)
        out.append(chr(0xDC00 + code) if kind == "x" and code >= 0x80 else chr(code))
        i += 2 + width
    return "".join(out)


def test_every_name_reads_its_own_way_and_on_one_printable_line():
    """Every string of up to four characters drawn from those that make names read alike
    (backslash, the letters of an escape, a newline, ESC, a C1 control, a line separator, a
    byte that is not UTF-8, an astral character): shown printable, and read back exactly."""
    import itertools

    alphabet = [
        "\\",
        "n",
        "x",
        "u",
        "8",
        "5",
        "\n",
        "\t",
        "\x1b",
        "\x7f",
        "\x85",
        "\u2028",
        "\udc85",
        "é",
        "\U0001f600",
        "\ufeff",
    ]
    seen: dict[str, str] = {}
    for n in range(5):
        for chars in itertools.product(alphabet, repeat=n):
            text = "".join(chars)
            shown = display.name(text)
            assert shown.isprintable(), (text, shown)
            assert seen.setdefault(shown, text) == text, (text, seen[shown], shown)
            assert _unescape(shown) == text, (text, shown)
            assert display.clean(shown) == shown  # a message's name is not escaped twice
    raw = b"a\\nb\x85\n"
    assert display.fs_text(raw) == display.name(os.fsdecode(raw)) == "a\\\\nb\\x85\\n"


def test_the_tuis_labels_show_names_by_the_one_rule():
    """The browser, find and diff labels of a name with a newline and of one with a
    backslash and an n: two labels, as the CLI prints them."""
    from core.compare import DiffChange, DiffSide, FindVersion
    from core.models import TreeEntry
    from tui.screens.browse import entry_label
    from tui.screens.diff import change_label
    from tui.screens.find import version_text

    for text in ("a\nb", "a\\nb"):
        entry = TreeEntry(path=text, name=text, kind="symlink", target=text)
        shown = entry_label(entry, marked=False).plain.split()
        assert shown[:3] == [display.name(text), "→", display.name(text)], shown
        v = FindVersion(newest="x", oldest="x", newest_at=NOW, oldest_at=NOW, kind="dir")
        assert version_text(text, v).plain.split()[0] == display.name(text)
        change = DiffChange(path=text, status="added", new=DiffSide(kind="file"))
        assert change_label(change, text).plain.split()[1] == display.name(text)
    assert display.name("a\nb") != display.name("a\\nb")
