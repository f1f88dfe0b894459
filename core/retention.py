"""Retention: which backups a policy keeps, and why. Pure: no repository, no clock, no I/O.

The rules are restic's (`restic forget --keep-*`, 0.14), because users already know them, and
for the same backups and the same rules the kept set is restic's (tests/test_retention.py runs
restic itself):

- every rule is evaluated for every backup; a backup is kept when any rule keeps it;
- a count rule (`last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly` N) walks the backups
  newest first and keeps the newest backup of each of the last N calendar periods that hold a
  backup (ISO 8601 weeks); `last` N keeps the N newest;
- a duration rule (`within` D, `within-hourly` ... `within-yearly` D) is measured back from the
  newest backup, never from now, so a pause in backups never wipes history: `within` keeps
  every backup newer than that instant, `within-daily` the newest of each day in that window
  (beyond restic: a newest backup dated ahead of this host's clock is not the measure; now,
  when the caller gives it, is: one host's wrong clock never empties the window);
- `tag` K=V (or K) keeps the backups carrying that tag.

Calendar periods are taken in UTC: every time the engine records is UTC (docs/design.md §1).

Beyond restic: only completed backups are judged by the rules; a failed or interrupted one is
removed once a newer backup completed; one in progress is never touched; the newest completed
backup and protected backups are always kept; checkpoints (taken before a restore) are judged
by their own rule only (`checkpoints` N or D; without it every checkpoint is kept); and a
policy whose rules keep none of the completed backups is refused (restic 0.17 does the same),
since that is nearly always a mistaken tag or period rather than a wish to empty the project.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from core import schedule as sched
from core.errors import InvalidInput
from core.models import (
    IN_PROGRESS,
    RESTORABLE,
    BackupMetadata,
    BackupStatus,
    BackupType,
    Model,
)
from core.notify import where
from core.utc import CLOCK_SKEW

_SPAN = re.compile(r"(\d+)([ymdh])")
#: Bounds that keep date arithmetic inside datetime's range whatever a user types.
MAX_SPAN_UNITS = 100_000
MAX_COUNT = 1_000_000
DEFAULT_GRACE_HOURS = 24


@dataclass(frozen=True)
class Span:
    """restic's duration: years, months, days and hours (`1y6m`, `30d`, `12h`)."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    @classmethod
    def parse(cls, text: str) -> Span:
        text = text.strip()
        parts = _SPAN.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(
                f"invalid duration {text!r}: use numbers with y, m, d or h (e.g. 30d, 1y6m, 12h)"
            )
        values = {"y": 0, "m": 0, "d": 0, "h": 0}
        for number, unit in parts:
            values[unit] += int(number)
        if any(v > MAX_SPAN_UNITS for v in values.values()):
            raise ValueError(f"duration {text!r} is too long")
        span = cls(values["y"], values["m"], values["d"], values["h"])
        if span.zero:
            raise ValueError(f"duration {text!r} is zero")
        return span

    @property
    def zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def __str__(self) -> str:
        units = zip((self.years, self.months, self.days, self.hours), "ymdh", strict=True)
        return "".join(f"{n}{u}" for n, u in units if n)

    def before(self, t: datetime) -> datetime:
        """`t` moved back by the span as Go's `AddDate(-y, -m, -d).Add(-h)` does (restic's
        arithmetic): years and months first, an overflowing day carried into the next month
        (31 March minus a month is 3 March), then the hours."""
        month0 = t.month - 1 - self.months
        year = t.year - self.years + month0 // 12
        month = month0 % 12 + 1
        try:
            first = t.replace(year=year, month=month, day=1)
            return first + timedelta(days=t.day - 1 - self.days, hours=-self.hours)
        except (ValueError, OverflowError):
            return datetime.min.replace(tzinfo=t.tzinfo)


def _span(value: str | None) -> str | None:
    if value is None:
        return None
    return str(Span.parse(value))


def _tag_rule(value: str) -> str:
    key = value.split("=", 1)[0]
    if not key or not value.isprintable() or len(value) > 321:
        raise ValueError(f"invalid tag rule {value[:80]!r}: use KEY or KEY=VALUE")
    return value


def _command(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 4096 or "\x00" in value:
        raise ValueError("a notification command is one non-empty line of up to 4096 characters")
    return value


def _webhook(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not re.fullmatch(r"https?://[^\s]{1,2040}", value):
        raise ValueError(f"webhook {value[:80]!r}: give an http:// or https:// URL")
    return value


class Policy(Model):
    """A project's retention rules (restic's `--keep-*` flags), stored in its repository.
    A count of 0 and an absent duration mean the rule is off.

    It also holds the project's schedule (issue 14, core/schedule.py): when `run-due` backs
    it up, the random delay, whether a scheduled backup is verified, and who is told of the
    outcome. A policy may hold a schedule and no retention rule (then nothing is removed)."""

    model_config = ConfigDict(extra="forbid")

    keep_last: int = Field(default=0, ge=0, le=MAX_COUNT)
    keep_hourly: int = Field(default=0, ge=0, le=MAX_COUNT)
    keep_daily: int = Field(default=0, ge=0, le=MAX_COUNT)
    keep_weekly: int = Field(default=0, ge=0, le=MAX_COUNT)
    keep_monthly: int = Field(default=0, ge=0, le=MAX_COUNT)
    keep_yearly: int = Field(default=0, ge=0, le=MAX_COUNT)
    keep_within: str | None = None
    keep_within_hourly: str | None = None
    keep_within_daily: str | None = None
    keep_within_weekly: str | None = None
    keep_within_monthly: str | None = None
    keep_within_yearly: str | None = None
    keep_tags: list[str] = Field(default_factory=list, max_length=32)
    #: Checkpoints' own rule: a count ("3") or a duration ("7d"); None keeps every checkpoint.
    keep_checkpoints: str | None = None
    #: How long a backup removed by retention stays restorable (and can be brought back).
    grace_hours: int = Field(default=DEFAULT_GRACE_HOURS, ge=0, le=24 * 366)
    #: When `run-due` backs the project up: a systemd calendar or a cron line (None: never).
    schedule: str | None = None
    #: Each scheduled run waits a random 0..N seconds (systemd's RandomizedDelaySec).
    schedule_delay: int = Field(default=0, ge=0, le=sched.MAX_DELAY_SECONDS)
    #: A scheduled backup is then verified: "quick" (its chunks are indexed) or "full"
    #: (every chunk it references read and checked).
    schedule_verify: Literal["off", "quick", "full"] = "off"
    #: Commands run after a scheduled run (`sh -c`, values only in the environment).
    on_failure: str | None = None
    on_success: str | None = None
    #: Receives a JSON POST after every scheduled run.
    webhook: str | None = None

    _commands = field_validator("on_failure", "on_success")(_command)

    @field_validator(
        "keep_last",
        "keep_hourly",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "keep_yearly",
        "grace_hours",
        "schedule_delay",
        mode="before",
    )
    @classmethod
    def _number(cls, value: object) -> object:
        # pydantic reads true as 1 and false as 0: a policy.json (or an API body) saying
        # "grace_hours": false would delete for good at once what the policy removes
        if isinstance(value, bool):
            raise ValueError(f"a whole number, not {str(value).lower()}")
        return value

    _hook = field_validator("webhook")(_webhook)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return sched.normalized(value)
        except sched.ScheduleError as exc:
            raise ValueError(str(exc)) from None

    _spans = field_validator(
        "keep_within",
        "keep_within_hourly",
        "keep_within_daily",
        "keep_within_weekly",
        "keep_within_monthly",
        "keep_within_yearly",
    )(_span)

    @field_validator("keep_tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return [_tag_rule(v) for v in value]

    @field_validator("keep_checkpoints")
    @classmethod
    def _checkpoints(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if value.isdigit():
            if not 0 < int(value) <= MAX_COUNT:
                raise ValueError(f"keep_checkpoints count must be 1-{MAX_COUNT}")
            return str(int(value))
        return str(Span.parse(value))

    def empty(self) -> bool:
        """No rule for ordinary backups (a checkpoint rule alone judges only checkpoints)."""
        counts = (self.keep_last, self.keep_hourly, self.keep_daily)
        counts += (self.keep_weekly, self.keep_monthly, self.keep_yearly)
        spans = (self.keep_within, self.keep_within_hourly, self.keep_within_daily)
        spans += (self.keep_within_weekly, self.keep_within_monthly, self.keep_within_yearly)
        return not any(counts) and not any(spans) and not self.keep_tags

    def retains(self) -> bool:
        """Whether any retention rule is set (else forget has nothing to apply)."""
        return not self.empty() or self.keep_checkpoints is not None

    def blank(self) -> bool:
        """No rule, no schedule, no notification: nothing worth storing."""
        return not self.retains() and self.schedule is None and not self.notifies()

    def notifies(self) -> bool:
        return bool(self.on_failure or self.on_success or self.webhook)

    def describe(self) -> list[str]:
        """The rules, one per item, as the CLI's flags spell them."""
        out = []
        for name, value in self.model_dump().items():
            if name == "grace_hours" or value in (0, None, [], "off"):
                continue
            flag = "--" + name.replace("_", "-")
            if name == "keep_tags":
                out += [f"--keep-tag {v}" for v in value]
            elif name == "schedule_delay":
                out.append(f"{flag} {sched.format_delay(value)}")
            elif name == "webhook":  # its path and query often hold a token: never logged
                out.append(f"{flag} {where(value)}")
            else:
                out.append(f"{flag} {value}")
        out.append(f"grace {self.grace_hours}h")
        return out


class Decision(Model):
    """What a policy does to one backup, and every reason for it."""

    backup_id: str
    created_at: datetime
    type: BackupType
    status: BackupStatus
    keep: bool
    reasons: list[str]
    protected: bool = False


class ForgetResult(Model):
    """What `forget` did (or, in a dry run, would do): every backup's decision, the backups
    removed now (soft: restorable for the grace period), those deleted for good (failed ones,
    and removed ones whose grace passed), and the space."""

    project_id: str
    dry_run: bool
    policy: Policy
    decisions: list[Decision]
    removed: list[str] = Field(default_factory=list)
    purged: list[str] = Field(default_factory=list)
    #: A removed backup listed again instead of deleted: the newest completed backup of all
    #: once the newer ones that made retention remove it were deleted (`to_reinstate`).
    reinstated: list[str] = Field(default_factory=list)
    #: The stored bytes only the removed and purged backups use: what is freed once their
    #: removal is final (None: a manifest could not be read, and reclaim would refuse).
    bytes_freed: int | None = None
    bytes_reclaimed: int = 0
    packs_deleted: int = 0
    packs_rewritten: int = 0
    reclaim_refused: str | None = None
    #: Backups whose metadata.json cannot be read: judged by no rule and kept as they are
    #: (said, never passed over in silence; `check` says why).
    unreadable: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One line for a log and for create's output."""
        kept = sum(1 for d in self.decisions if d.keep)
        verb = "would remove" if self.dry_run else "removed"
        line = f"retention kept {kept}, {verb} {len(self.removed)}"
        if self.removed:
            line += f" (restorable for {self.policy.grace_hours}h)"
        if self.purged:
            line += f", {'would delete' if self.dry_run else 'deleted'} {len(self.purged)}"
        if not self.dry_run and self.purged:
            line += f", reclaimed {self.bytes_reclaimed} bytes"
        if self.reinstated:
            line += f", listed {len(self.reinstated)} again"
        if self.unreadable:
            line += f"; {len(self.unreadable)} kept unjudged (metadata.json cannot be read)"
        if self.reclaim_refused:
            line += f"; space not reclaimed: {self.reclaim_refused}"
        return line


class RetentionRefused(InvalidInput):
    """The policy would remove every completed backup: nothing is removed."""


# --- the calendar periods (restic's "buckers"), in UTC --------------------------------------


def _anchor(newest: datetime, now: datetime | None) -> datetime:
    """Where the duration rules measure back from: the newest backup, unless it is dated
    ahead of this host's now (a host with a wrong clock): then now."""
    return newest if now is None else min(newest, _utc(now) + CLOCK_SKEW)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _hour(t: datetime) -> object:
    return (t.year, t.month, t.day, t.hour)


def _day(t: datetime) -> object:
    return (t.year, t.month, t.day)


def _week(t: datetime) -> object:
    year, week, _ = t.isocalendar()
    return (year, week)


def _month(t: datetime) -> object:
    return (t.year, t.month)


def _year(t: datetime) -> object:
    return t.year


Period = Callable[[datetime], object]
_COUNTS: tuple[tuple[str, str, Period | None], ...] = (
    ("keep_last", "last", None),
    ("keep_hourly", "hourly", _hour),
    ("keep_daily", "daily", _day),
    ("keep_weekly", "weekly", _week),
    ("keep_monthly", "monthly", _month),
    ("keep_yearly", "yearly", _year),
)
_WITHINS: tuple[tuple[str, str, Period], ...] = (
    ("keep_within_hourly", "hourly", _hour),
    ("keep_within_daily", "daily", _day),
    ("keep_within_weekly", "weekly", _week),
    ("keep_within_monthly", "monthly", _month),
    ("keep_within_yearly", "yearly", _year),
)


def _has_tag(tags: dict[str, str], rule: str) -> bool:
    key, eq, value = rule.partition("=")
    return key in tags and (not eq or tags[key] == value)


def newest_first(metas: Iterable[BackupMetadata]) -> list[BackupMetadata]:
    """restic's order: newest first; equal times by id, newest id first."""
    return sorted(metas, key=lambda m: (_utc(m.created_at), m.id), reverse=True)


def rule_reasons(
    backups: list[BackupMetadata], policy: Policy, now: datetime | None = None
) -> dict[str, list[str]]:
    """restic's ApplyPolicy over one group: for each backup (any order given), the reasons the
    rules keep it (empty: no rule keeps it). Judges every backup given, whatever its status.
    Durations are measured back from the newest backup, or from `now` (plus CLOCK_SKEW) when
    that is earlier: a backup dated ahead by a host whose clock is wrong would otherwise put
    every real backup outside `within`."""
    ordered = newest_first(backups)
    reasons: dict[str, list[str]] = {m.id: [] for m in ordered}
    if not ordered:
        return reasons
    latest = _anchor(max(_utc(m.created_at) for m in ordered), now)
    counts = {name: getattr(policy, name) for name, _label, _p in _COUNTS}
    last_period: dict[str, object] = {}
    within = Span.parse(policy.keep_within).before(latest) if policy.keep_within else None
    windows = {
        name: Span.parse(getattr(policy, name)).before(latest)
        for name, _label, _p in _WITHINS
        if getattr(policy, name)
    }
    for nr, meta in enumerate(ordered):
        t, why = _utc(meta.created_at), reasons[meta.id]
        why += [f"tag {rule}" for rule in policy.keep_tags if _has_tag(meta.tags, rule)]
        if within is not None and t > within:
            why.append(f"within {policy.keep_within}")
        for name, label, period in _COUNTS:
            total = getattr(policy, name)
            if counts[name] <= 0:
                continue
            value = nr if period is None else period(t)
            if name not in last_period or last_period[name] != value:
                last_period[name] = value
                counts[name] -= 1
                why.append(f"{label} {total - counts[name]}/{total}")
        for name, label, period in _WITHINS:
            if name in windows and t > windows[name]:
                value = period(t)
                if last_period.get(name, object()) != value:
                    last_period[name] = value
                    why.append(f"{label} within {getattr(policy, name)}")
    return reasons


def _checkpoint_reasons(
    checkpoints: list[BackupMetadata], rule: str | None, now: datetime | None
) -> dict[str, list]:
    ordered = newest_first(checkpoints)
    if rule is None:
        return {m.id: ["checkpoint (no checkpoint rule)"] for m in ordered}
    if rule.isdigit():
        n = int(rule)
        return {m.id: [f"checkpoint {i + 1}/{n}"] if i < n else [] for i, m in enumerate(ordered)}
    if not ordered:
        return {}
    since = Span.parse(rule).before(_anchor(_utc(ordered[0].created_at), now))
    return {
        m.id: [f"checkpoint within {rule}"] if _utc(m.created_at) > since else [] for m in ordered
    }


def evaluate(
    backups: Iterable[BackupMetadata],
    policy: Policy,
    *,
    refuse_empty: bool = True,
    just_made: str | None = None,
    now: datetime | None = None,
) -> list[Decision]:
    """Every backup's decision, newest first. Raises RetentionRefused when the rules keep none
    of the completed backups (with `refuse_empty`), InvalidInput for a policy with no rule.
    The backup `just_made` (the policy applied after a backup) is kept whatever the rules
    say: a backup dated later (a host whose clock runs ahead) never makes it vanish as it
    is reported made. `now`: this host's time, see `rule_reasons`."""
    if policy.empty() and policy.keep_checkpoints is None:
        raise InvalidInput("the policy has no rule: give at least one --keep-... rule")
    metas = newest_first(backups)
    done = [m for m in metas if m.status in RESTORABLE and m.type != BackupType.CHECKPOINT]
    checkpoints = [m for m in metas if m.status in RESTORABLE and m.type == BackupType.CHECKPOINT]
    if policy.empty():  # only a checkpoint rule: ordinary backups are not judged
        reasons = {m.id: ["no rule for backups"] for m in done}
    else:
        reasons = rule_reasons(done, policy, now)
    if refuse_empty and done and not any(reasons[m.id] for m in done):
        raise RetentionRefused(
            f"the policy keeps none of the {len(done)} completed backups; refused, nothing "
            "removed (check its tags and periods)"
        )
    reasons.update(_checkpoint_reasons(checkpoints, policy.keep_checkpoints, now))
    newest_any = max((_utc(m.created_at) for m in done + checkpoints), default=None)
    decisions = []
    for meta in metas:
        why = list(reasons.get(meta.id, []))
        if meta.status in IN_PROGRESS:
            why = ["in progress"]
        elif meta.status not in RESTORABLE:
            newer = newest_any is not None and newest_any > _utc(meta.created_at)
            if not newer:
                why = [f"{meta.status.value}, no newer backup completed"]
        elif done and meta.id == done[0].id:
            why.append("newest")
        if meta.id == just_made and meta.status in RESTORABLE:
            why.append("just made")
        if meta.protected:
            why.insert(0, "protected")
        keep = bool(why)
        if not keep:
            if meta.status not in RESTORABLE and meta.status not in IN_PROGRESS:
                why = [f"{meta.status.value}, a newer backup completed"]
            else:
                why = ["no rule keeps it"]
        decisions.append(
            Decision(
                backup_id=meta.id,
                created_at=meta.created_at,
                type=meta.type,
                status=meta.status,
                keep=keep,
                reasons=why,
                protected=meta.protected,
            )
        )
    return decisions
