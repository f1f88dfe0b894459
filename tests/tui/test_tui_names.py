"""I14 in the TUI: a name shown never breaks a line, reaches the terminal or reads as another.

Real files with hostile names (a newline, an ESC, Rich markup such as `[b]` or, across two
components, `q[/]z`) in a data directory, a backup and a restore target, on the real core
behind the app. Each test reads what the terminal would get: the rendered screen, line by
line (`screen_lines`), never a widget's source string. A name must show in its escaped form
(`\\n`, `\\x1b`), markup must show as written, and no raw control character may be drawn.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input
from tui_helpers import settle, wait_for

from core.manager import BackupManager
from core.models import CreateRequest
from tui.app import NexusApp
from tui.screens.confirm import ConfirmScreen
from tui.screens.restore import RestoreScreen

HOSTILE_DIR = "da\nta[b]x\x1b[31m"  # a newline, markup, an ESC that starts a colour
SHOWN_DIR = "da\\nta[b]x\\x1b[31m"  # how core.display.name writes it


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short directory for this module: its tests read whole paths off the screen, and
    pytest's own (seventy-odd characters under xdist) is wrapped or cut at a dialog's width."""
    path = Path(tempfile.mkdtemp(prefix="nx", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def screen_lines(app: NexusApp) -> list[str]:
    """The characters of every row the current screen draws (dialogs and toasts included)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def region_text(app: NexusApp, selector: str) -> str:
    """What the screen draws inside the widgets `selector` matches (a dialog, the toasts),
    each row without its border and padding and its runs of spaces as one (columns), joined
    by a space (where a line was wrapped)."""
    lines = screen_lines(app)
    out = []
    for widget in app.screen.query(selector):
        r = widget.region
        for y in range(r.y, r.y + r.height):
            out.append(" ".join(lines[y][r.x : r.x + r.width].strip(" │▏▕▌╭╮╰╯─▎▊").split()))
    return " ".join(line for line in out if line)


def squeezed(text: str) -> str:
    """Without spaces: a toast is narrow and folds a long path anywhere."""
    return text.replace(" ", "")


def raw_controls(lines: list[str]) -> list[str]:
    """The lines holding a character a terminal would obey rather than show."""
    return [
        line
        for line in lines
        if any(not ch.isprintable() for ch in line)  # C0, DEL, C1, U+2028, ...
    ]


async def _project(root: Path, data: Path, **tags: str) -> None:
    mgr = BackupManager(root)
    await mgr.create_project("proj", str(data))
    await mgr.create(CreateRequest(project_id="proj", data_dir=str(data), tags=tags))


def _hostile_data(tmp_path: Path) -> Path:
    data = tmp_path / HOSTILE_DIR
    (data / "q[").mkdir(parents=True)
    (data / "q[" / "]z").write_bytes(b"zz")  # its path, q[/]z, closes a markup tag
    (data / "[red]r").write_bytes(b"r")
    (data / "h\ni").write_bytes(b"hi")
    return data


async def test_delete_project_dialog_shows_the_data_dir_escaped(tmp_path: Path) -> None:
    """The confirmation names the data directory it leaves alone: escaped, on its line."""
    root = tmp_path / "root"
    await _project(root, _hostile_data(tmp_path))
    app = NexusApp(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("X")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        lines = screen_lines(app)
        assert raw_controls(lines) == []
        shown = f"Its data directory {tmp_path}/{SHOWN_DIR} is not"
        # drawn once the dialog is laid out (a loaded machine may take more than a settle)
        await wait_for(pilot, lambda: shown in region_text(app, "#dialog"), timeout=10)
        await pilot.press("n")


async def test_detail_shows_source_and_tags_as_written(tmp_path: Path) -> None:
    """The detail pane (a Rich table) shows the source path escaped and a tag holding markup
    literally; `x[/]y` in a tag no longer fails the pane with a MarkupError."""
    root = tmp_path / "root"
    await _project(root, _hostile_data(tmp_path), note="x[/]y [b]bold[/b]")
    app = NexusApp(root)
    async with app.run_test(size=(240, 50)) as pilot:
        await settle(pilot)
        detail = region_text(app, "DetailView")
        assert raw_controls([detail]) == []
        assert f"Source {tmp_path}/{SHOWN_DIR} on " in detail  # the source, [b] kept
        assert "Tags note=x[/]y [b]bold[/b]" in detail


async def test_restore_preview_confirm_and_toast_show_names_as_written(tmp_path: Path) -> None:
    """The preview lists `q[/]z` and `[red]r` literally (a str cell is markup to a DataTable:
    this crashed the app), the confirmation and the result name a target holding an ESC and
    `[b]` escaped, and so does the toast."""
    root = tmp_path / "root"
    await _project(root, _hostile_data(tmp_path))
    target = tmp_path / "t[b]\x1bq" / "]y"
    app = NexusApp(root)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2", "r")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        screen.query_one("#target", Input).value = str(target)
        await settle(pilot)
        await pilot.press("ctrl+d")
        await settle(pilot)
        preview = region_text(app, "#preview")
        assert raw_controls([preview]) == []
        for shown in ("q[/]z", "[red]r", "h\\ni"):
            assert f"create {shown} " in preview
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        confirm = region_text(app, "#dialog")
        assert raw_controls([confirm]) == []
        backup_id = screen.backup.id
        assert f"Restore {backup_id} into {tmp_path}/t[b]\\x1bq/]y" in confirm
        await pilot.press("y")
        await settle(pilot)
        assert (target / "q[" / "]z").read_bytes() == b"zz"
        # (the Target field above holds the path itself, as typed: an Input's value is data)
        result, toast = region_text(app, "#result"), region_text(app, "Toast")
        assert raw_controls([result, toast]) == []
        assert f"Restored into {tmp_path}/t[b]\\x1bq/]y" in result
        assert f"into{tmp_path}/t[b]\\x1bq/]y·verified" in squeezed(toast)


async def test_an_error_toast_naming_a_path_shows_it_as_written(tmp_path: Path) -> None:
    """An OSError on a path with a newline and `x[/]y` (markup that cannot close) becomes a
    toast that shows the path escaped and the brackets as written (before: a MarkupError)."""
    root = tmp_path / "root"
    await _project(root, _hostile_data(tmp_path))
    app = NexusApp(root)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await settle(pilot)
        bad = f"{tmp_path}/a\nb[/]c\x1b[2J"
        app.report_error(PermissionError(errno.EACCES, "Permission denied", bad), what="read")
        await settle(pilot)
        toast = region_text(app, "Toast")
        assert raw_controls([toast]) == []
        assert f"{tmp_path}/a\\nb[/]c\\x1b[2J:permissiondenied" in squeezed(toast)


async def test_the_log_pane_escapes_a_control_character_of_a_message(tmp_path: Path) -> None:
    """The engine's "backup of <dir> started" names the directory escaped, and the log pane
    escapes any control character a message still holds: no ESC reaches the terminal."""
    root = tmp_path / "root"
    await _project(root, _hostile_data(tmp_path))
    app = NexusApp(root)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        log = region_text(app, "LogTail")
        assert raw_controls([log]) == []
        assert f"backup of {tmp_path}/{SHOWN_DIR} started" in log


async def test_the_restore_form_never_offers_a_target_that_does_not_read_as_itself(
    tmp_path: Path,
) -> None:
    """The Target field shows its value as it is (it is the path itself), so the default
    beside a data directory named with a newline and an ESC would draw them raw: it is
    offered in the home directory instead, and the whole form draws no control character."""
    root = tmp_path / "root"
    await _project(root, _hostile_data(tmp_path))
    app = NexusApp(root)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        await pilot.press("2", "r")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RestoreScreen)
        value = screen.query_one("#target", Input).value
        assert value.isprintable()
        assert value.startswith("~/proj.restore-") or value.startswith(str(Path.home()))
        assert raw_controls([region_text(app, "#dialog")]) == []


async def test_a_repository_path_holding_markup_shows_as_written(tmp_path: Path) -> None:
    """The projects pane names the repository in its bottom border; a border title is markup
    to Textual, and a root `r[/]t` (a folder `r[` holding `]t`) failed it with a MarkupError."""
    root = tmp_path / "r[" / "]t"
    await _project(root, _hostile_data(tmp_path))
    app = NexusApp(root)
    async with app.run_test(size=(200, 40)) as pilot:
        await settle(pilot)
        assert "r[/]t" in "\n".join(screen_lines(app))
