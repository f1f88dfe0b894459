"""The one rule for ids (projects, backups, keys of the layout): they become path
components. Apart from the models (core.models re-exports it) so that what checks an id
before the engine is imported (the CLI's parser, the unlock started ahead) imports no
pydantic."""

from __future__ import annotations

import re

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_id(value: str, what: str = "id") -> str:
    """Ids become path components: no separators, no `..`, bounded length and charset."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return value


def is_id(value: str) -> bool:
    """Whether `check_id` accepts `value` (a name listed in the store, judged, not refused)."""
    try:
        check_id(value)
    except ValueError:
        return False
    return True
