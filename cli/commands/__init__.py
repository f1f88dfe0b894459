"""One module per command of `nexus-backup`, each with a `cmd_<name>(ctx) -> exit code`.

`cli.parser` declares each command's arguments and binds it to its function; a command reads
`ctx.args`, calls the manager, and prints through `cli.render` (or emits `--json`).
"""
