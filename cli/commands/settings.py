"""`settings`: a project's settings (its data directory, where each new backup is copied);
`settings PROJECT copy-to REPO` copies every new backup there right after it completes
(`copy-to off` stops it)."""

from __future__ import annotations

import json

from cli.context import EXIT_OK, Context, UsageError, refuse_process_bound, run
from cli.render import block, clean, name, out


def cmd_settings(ctx: Context) -> int:
    a = ctx.args
    mgr = ctx.manager
    if a.key is not None:
        if a.key != "copy-to" or a.value is None:
            raise UsageError("settings: set one with: settings PROJECT copy-to REPO|off")
        refuse_process_bound(a.value, "copy-to")
        run(mgr.set_copy_to(a.project, None if a.value == "off" else a.value))
    settings = run(mgr.settings(a.project))
    if ctx.json:
        out(json.dumps(settings, indent=2, sort_keys=True))
        return EXIT_OK
    pairs = [
        ("Data dir", name(str(settings["data_dir"])) if settings.get("data_dir") else "-"),
        ("Copy to", clean(settings.get("copy_to") or "- (no copy after each backup)")),
    ]
    out("\n".join(block(pairs)))
    return EXIT_OK
