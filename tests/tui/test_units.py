"""The pure parts: the filter language and the log follower."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.logger import BackupLogger
from core.models import BackupMetadata, BackupStatus, BackupType
from tui.filtering import parse_filter
from tui.widgets.log_tail import BACKLOG_BYTES
from tui.widgets.log_tail import follower as view_follower

NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


def meta(**kw) -> BackupMetadata:  # type: ignore[no-untyped-def]
    base = dict(
        id="20261129-120000-abcdef",
        project_id="p",
        type=BackupType.FULL,
        status=BackupStatus.COMPLETED,
        created_at=NOW - timedelta(hours=3),
        tags={"env": "prod"},
    )
    base.update(kw)
    return BackupMetadata(**base)


def test_filter_tokens_and_prefixes() -> None:
    assert parse_filter("type:inc", NOW).types == {BackupType.INCREMENTAL}
    assert parse_filter("t:full,snap", NOW).types == {BackupType.FULL, BackupType.SNAPSHOT}
    assert parse_filter("status:f", NOW).statuses == {BackupStatus.FAILED}
    assert not parse_filter("tag:env=pr", NOW).matches(meta())  # exact value, as everywhere
    flt = parse_filter("tag:env=prod", NOW)
    assert flt.matches(meta()) and not flt.matches(meta(tags={"env": "staging"}))
    assert parse_filter("tag:env", NOW).matches(meta())
    assert not parse_filter("tag:owner", NOW).matches(meta())


def test_filter_dates_relative_and_absolute() -> None:
    assert parse_filter("since:2h", NOW).matches(meta(created_at=NOW - timedelta(hours=1)))
    assert not parse_filter("since:2h", NOW).matches(meta())
    day = parse_filter("date:2026-11-29", NOW)
    assert day.matches(meta()) and not day.matches(meta(created_at=NOW - timedelta(days=1)))
    assert parse_filter("until:yesterday", NOW).matches(meta(created_at=NOW - timedelta(days=1)))
    assert parse_filter("since:2026-11", NOW).matches(meta())


def test_filter_free_text_and_errors() -> None:
    failed = meta(status=BackupStatus.FAILED, error_message="Disk full")
    assert parse_filter("disk", NOW).matches(failed)
    assert parse_filter("abcdef prod", NOW).matches(meta())
    assert not parse_filter("abcdef nope", NOW).matches(meta())
    bad = parse_filter("type:nope since:garbage", NOW)
    assert bad.is_empty and len(bad.errors) == 2
    assert parse_filter("type:", NOW).is_empty  # still being typed
    assert "type=full" in parse_filter("type:full x", NOW).describe()


def test_follower_reads_new_lines_only_and_holds_partial_ones(tmp_path: Path) -> None:
    logger = BackupLogger(tmp_path)
    path = logger.path_for("p")
    follower = view_follower(lambda: path, "p")
    assert follower is not None and follower.read() == ([], False)  # no file yet
    logger.info("p", "create", "one")
    records, _ = follower.read()
    assert [r.message for r in records] == ["one"]
    with open(path, "a") as f:
        f.write("2026-11-29T03:12:03.123Z INFO    create   backup=- half")
    assert follower.read()[0] == []  # not complete yet
    with open(path, "a") as f:
        f.write(" done\n")
    assert [r.message for r in follower.read()[0]] == ["half done"]


def test_follower_starts_from_the_tail_and_survives_rotation(tmp_path: Path) -> None:
    logger = BackupLogger(tmp_path)
    path = logger.path_for("p")
    for i in range(20000):
        logger.info("p", "spam", f"line {i}")
    assert path.stat().st_size > BACKLOG_BYTES
    follower = view_follower(lambda: path, "p")
    assert follower is not None
    records, _ = follower.read()
    assert records[-1].message == "line 19999"
    assert len(records) < 20000  # only the tail: a large file is never read whole
    os.unlink(path)  # replaced (rotation): starts over
    logger.info("p", "new", "fresh")
    records, reset = follower.read()
    assert reset and [r.message for r in records] == ["fresh"]
    day2 = tmp_path / "logs" / "p_2026-11-30.log"
    follower2 = view_follower(lambda: day2, "p")
    assert follower2 is not None
    assert follower2.read()[0] == []


async def test_browsing_shows_a_name_that_is_not_utf8_escaped_as_every_face_does(
    tmp_path: Path,
) -> None:
    """A name with a byte that is not UTF-8 and a newline, backed up and browsed through the
    real engine: the tree shows it on one line, the byte as \\xNN (core.display's policy),
    while the entry keeps the name itself for a restore of it."""
    from core.display import clean, fs_text
    from core.manager import BackupManager
    from core.models import CreateRequest
    from tui.screens.browse import entry_label

    data = tmp_path / "data"
    data.mkdir()
    raw = b"caf\xe9\nx.txt"
    with open(os.path.join(os.fsencode(data), raw), "wb") as f:
        f.write(b"x")
    os.symlink(raw, os.path.join(os.fsencode(data), b"link"))
    mgr = BackupManager(tmp_path / "root")
    meta_ = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    entries = {e.kind: e for e in await mgr.browse("p", meta_.id)}
    shown = entry_label(entries["file"], marked=False).plain
    assert "caf\\xe9\\nx.txt" in shown and "\n" not in shown
    assert clean(fs_text(raw)) in shown  # as the CLI and the engine's messages show it
    assert os.fsencode(entries["file"].name) == raw  # the data is untouched
    link = entry_label(entries["symlink"], marked=False).plain
    assert "→ caf\\xe9\\nx.txt" in link


def test_wording_of_failures_counts_and_small_sizes() -> None:
    from tui import format as fmt
    from tui.widgets.detail import render_detail

    assert fmt.failure_text("cancelled", "cancelled") == "cancelled"
    assert fmt.failure_text("failed", "disk full") == "failed: disk full"
    assert fmt.failure_text("failed", None) == "failed"
    assert fmt.plural(1, "file") == "1 file"
    failed = BackupMetadata(
        id="20261201-120000-abcdef",
        project_id="p",
        type=BackupType.FULL,
        status=BackupStatus.FAILED,
        created_at=NOW,
        completed_at=NOW,
        size_bytes=0,
        error_message="interrupted",
    )
    from rich.console import Console

    console = Console(width=100, record=True)
    console.print(render_detail(failed, None, NOW))
    text = console.export_text()
    assert "Ended" in text and "Completed" not in text  # a failed backup did not complete
    assert "0 Bytes (0 bytes)" not in text


def test_the_detail_marks_a_deleted_parent() -> None:
    from rich.console import Console

    from core.models import BackupInfo
    from tui.widgets.detail import render_detail

    child = meta(parent_backup_id="20261101-100000-aaaaaa")
    info = BackupInfo(
        metadata=child,
        parent_chain=["20261101-100000-aaaaaa"],
        deleted_parents=["20261101-100000-aaaaaa"],
    )
    console = Console(width=120, record=True)
    console.print(render_detail(child, info, NOW))
    text = console.export_text()
    assert "20261101-100000-aaaaaa (deleted)" in text
