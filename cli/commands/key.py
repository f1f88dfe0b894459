"""`key list|add|remove|passwd PROJECT`: the passwords (key objects) of an encrypted project.
Several passwords open one project (a person's, a machine's); each wraps the same master
key, so adding or removing one never touches the data. `remove` refuses the last key;
`passwd` writes the new key before it removes the old one (a crash leaves either working)."""

from __future__ import annotations

import json

from cli.context import EXIT_OK, Context, UsageError
from cli.render import clean, out, table


def cmd_key(ctx: Context) -> int:
    a = ctx.args
    mgr = ctx.manager
    if a.action != "remove" and a.key_id is not None:
        raise UsageError(f"key {a.action}: takes no KEY_ID")
    if a.action == "list":
        keys = mgr.key_list(a.project)
        if ctx.json:
            out(json.dumps(keys, indent=2, sort_keys=True))
            return EXIT_OK
        rows = [
            [
                ("* " if k.get("current") else "  ") + k["id"],
                clean(str(k.get("user", "-"))),
                clean(str(k.get("host", "-"))),
                str(k.get("created_at", "-"))[:19].replace("T", " "),
                "damaged: " + clean(k["damaged"]) if "damaged" in k else "",
            ]
            for k in keys
        ]
        out("\n".join(table(["KEY", "USER", "HOST", "CREATED", ""], rows, right=set())))
        return EXIT_OK
    if a.action == "remove":
        if a.key_id is None:
            raise UsageError("key remove: name the KEY_ID to remove (see key list)")
        mgr.key_remove(a.project, a.key_id)
        _done(ctx, {"removed": a.key_id}, f"key {a.key_id} removed")
        return EXIT_OK
    mgr.key_list(a.project)  # unlocked with the current password before a new one is asked
    new = ctx.passwords.new(f"new password for project {a.project!r}")
    if a.action == "add":
        key_id = mgr.key_add(a.project, new)
        _done(ctx, {"added": key_id}, f"key {key_id} added")
    else:
        key_id = mgr.key_passwd(a.project, new)
        _done(ctx, {"added": key_id}, f"password changed (now key {key_id})")
    return EXIT_OK


def _done(ctx: Context, value: dict, line: str) -> None:
    out(json.dumps(value) if ctx.json else line)
