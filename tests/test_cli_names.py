"""I14 in the CLI's own lines: a data directory or a restore target is printed with
`core.display.name`, not `clean`, so a directory named `a\\nb` (a backslash, then n) never
reads like the one named with a newline (real directories, real processes)."""

from __future__ import annotations

from pathlib import Path

from test_cli import js, nb, ok


def test_a_backslash_and_a_newline_in_a_path_read_apart(tmp_path: Path) -> None:
    shown = {}
    for label, dirname in (("newline", "a\nb"), ("backslash", "a\\nb")):
        root, data = tmp_path / label / "root", tmp_path / label / dirname
        data.mkdir(parents=True)
        (data / "f").write_bytes(b"f")
        bid = js(nb(root, "--json", "create", "proj", str(data)))["id"]
        target = tmp_path / label / f"t-{dirname}"
        restored = ok(nb(root, "restore", "proj", bid, str(target))).stdout
        settings = ok(nb(root, "settings", "proj")).stdout
        info = ok(nb(root, "info", "proj", bid)).stdout
        shown[label] = (restored, settings, info)
        for text in shown[label]:
            assert all(line.isprintable() for line in text.splitlines()), text
    base = {label: f"{tmp_path}/{label}" for label in shown}
    assert f"into {base['newline']}/t-a\\nb" in shown["newline"][0]
    assert f"into {base['backslash']}/t-a\\\\nb" in shown["backslash"][0]
    assert f"{base['newline']}/a\\nb" in shown["newline"][1]
    assert f"{base['backslash']}/a\\\\nb" in shown["backslash"][1]
    assert f"{base['newline']}/a\\nb" in shown["newline"][2]
    assert f"{base['backslash']}/a\\\\nb" in shown["backslash"][2]
