"""`nexus-backup`, the command-line face of the engine (beside `tui/` and `api/`).

`cli.main.main` is the program (the `nexus-backup` script, and `python -m cli`); `cli.parser`
builds its arguments, `cli.render` prints, and `cli/commands/` holds one module per command.
Nothing here is imported by the engine; this package imports only the engine's public surface
(the manager, models, errors, config, memory), and starts the TUI and the API lazily.
"""
