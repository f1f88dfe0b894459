"""Telling someone how a scheduled run ended (issue 14): the policy's on-failure / on-success
command and its webhook. A notifier that fails is logged and reported, and never changes the
run's result: a backup that succeeded stays succeeded when the mail server is down.

The command is run with `sh -c COMMAND` so that a user can write a pipe
(`echo "$NEXUS_ERROR" | mail -s "backup $NEXUS_PROJECT failed" root`); the run's values are
only ever in its environment (NEXUS_PROJECT, NEXUS_BACKUP_ID, NEXUS_STATUS, NEXUS_ERROR,
NEXUS_SCHEDULED_FOR), never spliced into the command line, so an error message holding `;`
or `$(...)` is data, not code. The command comes from the project's policy, stored in the
repository: whoever may write the repository may set it (docs/design.md says so).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from typing import Any

#: Seconds a notification command may run before it is killed.
COMMAND_TIMEOUT = 60.0
#: Seconds the webhook's server has to answer (connect, send, read).
WEBHOOK_TIMEOUT = 10.0


def environment(values: Mapping[str, str | None]) -> dict[str, str]:
    """The command's environment: this process's, plus the run's NEXUS_* values."""
    env = dict(os.environ)
    for key, value in values.items():
        env[key] = "" if value is None else value.replace("\x00", "")
    return env


def run_command(command: str, values: Mapping[str, str | None]) -> str | None:
    """Run the notification command; None when it exited 0, else the one line of why not."""
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            env=environment(values),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"notification command did not end within {COMMAND_TIMEOUT:.0f}s (killed)"
    except OSError as exc:
        return f"notification command could not start: {exc}"
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        why = f": {tail[0][:200]}" if tail[0] else ""
        return f"notification command exited {proc.returncode}{why}"
    return None


def where(url: str) -> str:
    """The webhook named without its path and query, which often hold a secret token."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/..."


def post_webhook(url: str, payload: dict[str, Any]) -> str | None:
    """POST the run's outcome as JSON; None on a 2xx answer, else the one line of why not
    (naming the server only, never the URL's path or query)."""
    import httpx  # only when a policy names a webhook

    try:
        response = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as exc:
        return f"webhook {where(url)}: {type(exc).__name__}"
    if not 200 <= response.status_code < 300:
        return f"webhook {where(url)}: answered HTTP {response.status_code}"
    return None
