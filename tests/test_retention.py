"""The retention rules (core/retention.py): restic's semantics, checked against restic itself,
and the guarantees beyond restic's (newest, protected, in progress, failed, checkpoints,
a policy keeping nothing refused)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput
from core.models import BackupMetadata, BackupStatus, BackupType
from core.retention import Policy, RetentionRefused, Span, evaluate, rule_reasons
from tests import restic_helpers
from tests.restic_helpers import ResticRepo

needs_restic = pytest.mark.skipif(not restic_helpers.available(), reason="restic not installed")

T0 = datetime(2021, 1, 1, tzinfo=UTC)


def meta(
    when: datetime,
    *,
    n: int | None = None,
    status: BackupStatus = BackupStatus.COMPLETED,
    type: BackupType = BackupType.FULL,
    tags: dict[str, str] | None = None,
    protected: bool = False,
) -> BackupMetadata:
    return BackupMetadata(
        id=f"{when:%Y%m%d-%H%M%S}-{n if n is not None else 0:06x}",
        project_id="p",
        type=type,
        status=status,
        created_at=when,
        tags=tags or {},
        protected=protected,
    )


def kept(decisions) -> set[str]:
    return {d.backup_id for d in decisions if d.keep}


def by_id(decisions) -> dict[str, list[str]]:
    return {d.backup_id: d.reasons for d in decisions}


# --- the rules, with their reasons ---------------------------------------------------------


def test_daily_keeps_the_newest_of_each_of_the_last_n_days_holding_a_backup():
    # two a day on days 0, 1, 3 and 4 (day 2 has none: it is not counted)
    times = [T0 + timedelta(days=d, hours=h) for d in (0, 1, 3, 4) for h in (1, 20)]
    backups = [meta(t) for t in times]
    decisions = evaluate(backups, Policy(keep_daily=3))
    reasons = by_id(decisions)
    ids = {t: meta(t).id for t in times}
    assert kept(decisions) == {ids[T0 + timedelta(days=d, hours=20)] for d in (1, 3, 4)}
    assert reasons[ids[T0 + timedelta(days=4, hours=20)]] == ["daily 1/3", "newest"]
    assert reasons[ids[T0 + timedelta(days=1, hours=20)]] == ["daily 3/3"]
    assert reasons[ids[T0 + timedelta(days=0, hours=20)]] == ["no rule keeps it"]


def test_weeks_are_iso_weeks_and_durations_count_back_from_the_newest_backup():
    # 2021-01-03 is a Sunday (ISO week 53 of 2020), 2021-01-04 a Monday (week 1)
    sunday, monday = datetime(2021, 1, 3, 12, tzinfo=UTC), datetime(2021, 1, 4, 12, tzinfo=UTC)
    assert rule_reasons([meta(sunday), meta(monday)], Policy(keep_weekly=2)) == {
        meta(monday).id: ["weekly 1/2"],
        meta(sunday).id: ["weekly 2/2"],
    }
    # a pause of a year: "within 30d" still keeps the last month before the pause
    old = [meta(T0 + timedelta(days=d)) for d in range(0, 60, 10)]
    reasons = rule_reasons(old, Policy(keep_within="30d"))
    assert [bool(reasons[m.id]) for m in old] == [False, False, False, True, True, True]
    assert reasons[old[-1].id] == ["within 30d"]


def test_tag_rule_matches_a_key_or_a_key_and_value():
    a = meta(T0, n=1, tags={"env": "prod"})
    b = meta(T0 + timedelta(hours=1), n=2, tags={"env": "test"})
    c = meta(T0 + timedelta(hours=2), n=3)
    reasons = rule_reasons([a, b, c], Policy(keep_tags=["env=prod", "env"]))
    assert reasons == {a.id: ["tag env=prod", "tag env"], b.id: ["tag env"], c.id: []}


def test_span_arithmetic_is_gos_add_date():
    # 31 March minus one month is 3 March (Go normalises 31 February forward)
    assert Span.parse("1m").before(datetime(2021, 3, 31, 5, tzinfo=UTC)) == datetime(
        2021, 3, 3, 5, tzinfo=UTC
    )
    assert Span.parse("1y2m3d4h").before(datetime(2021, 3, 10, 5, tzinfo=UTC)) == datetime(
        2020, 1, 7, 1, tzinfo=UTC
    )
    assert str(Span.parse("2d1y")) == "1y2d"
    for bad in ("", "30", "d", "3w", "-1d", "0d", "1.5d"):
        with pytest.raises(ValueError):
            Span.parse(bad)


# --- beyond restic ----------------------------------------------------------------------------


def test_newest_protected_running_failed_and_checkpoints():
    oldest = meta(T0, n=1, protected=True)
    failed_old = meta(T0 + timedelta(hours=1), n=2, status=BackupStatus.FAILED)
    middle = meta(T0 + timedelta(hours=2), n=3, tags={"keep": "1"})
    newest = meta(T0 + timedelta(hours=3), n=4)
    running = meta(T0 + timedelta(hours=4), n=5, status=BackupStatus.RUNNING)
    failed_new = meta(T0 + timedelta(hours=5), n=6, status=BackupStatus.FAILED)
    cp_old = meta(T0 + timedelta(minutes=10), n=7, type=BackupType.CHECKPOINT)
    cp_new = meta(T0 + timedelta(minutes=20), n=8, type=BackupType.CHECKPOINT)
    all_ = [oldest, failed_old, middle, newest, running, failed_new, cp_old, cp_new]
    decisions = evaluate(all_, Policy(keep_tags=["keep=1"], keep_checkpoints="1"))
    reasons = by_id(decisions)
    assert kept(decisions) == {
        oldest.id,
        middle.id,
        newest.id,
        running.id,
        failed_new.id,
        cp_new.id,
    }
    assert reasons[oldest.id] == ["protected"]
    assert reasons[newest.id] == ["newest"]
    assert reasons[middle.id] == ["tag keep=1"]
    assert reasons[running.id] == ["in progress"]
    assert reasons[failed_new.id] == ["failed, no newer backup completed"]
    assert reasons[failed_old.id] == ["failed, a newer backup completed"]
    assert reasons[cp_new.id] == ["checkpoint 1/1"]
    assert reasons[cp_old.id] == ["no rule keeps it"]
    # without a checkpoint rule every checkpoint stays; newest first
    decisions = evaluate(all_, Policy(keep_last=1))
    assert {cp_old.id, cp_new.id} <= kept(decisions)
    assert [d.created_at for d in decisions] == sorted((m.created_at for m in all_), reverse=True)


def test_a_policy_keeping_no_completed_backup_is_refused_and_an_empty_one_rejected():
    backups = [meta(T0 + timedelta(days=d)) for d in range(3)]
    with pytest.raises(RetentionRefused, match="keeps none of the 3 completed backups"):
        evaluate(backups, Policy(keep_tags=["env=prod"]))
    with pytest.raises(InvalidInput, match="no rule"):
        evaluate(backups, Policy())
    # a protected backup does not make such a policy acceptable: the rules themselves keep none
    backups[0].protected = True
    with pytest.raises(RetentionRefused):
        evaluate(backups, Policy(keep_tags=["env=prod"]))


def test_policy_validation_is_one_clear_line():
    with pytest.raises(ValueError, match="invalid duration"):
        Policy(keep_within="a week")
    with pytest.raises(ValueError):
        Policy(keep_daily=-1)
    with pytest.raises(ValueError, match="tag rule"):
        Policy(keep_tags=["=x"])
    assert Policy(keep_checkpoints="07").keep_checkpoints == "7"
    assert Policy(keep_checkpoints="1m7d").keep_checkpoints == "1m7d"
    assert Policy(keep_daily=7, keep_within="30d").describe() == [
        "--keep-daily 7",
        "--keep-within 30d",
        "grace 24h",
    ]


# --- against restic itself --------------------------------------------------------------------

FLAG_SETS = [
    ["--keep-last", "2"],
    ["--keep-hourly", "3"],
    ["--keep-daily", "4"],
    ["--keep-weekly", "2", "--keep-monthly", "2"],
    ["--keep-yearly", "1", "--keep-last", "1"],
    ["--keep-within", "2d"],
    ["--keep-within-daily", "7d", "--keep-within-weekly", "1m"],
    ["--keep-within-hourly", "1d3h", "--keep-within-monthly", "1y", "--keep-within-yearly", "2y"],
    ["--keep-tag", "env=prod", "--keep-daily", "1"],
]


def policy_of(flags: list[str]) -> Policy:
    values: dict = {"keep_tags": []}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        name = flag[2:].replace("-", "_")
        if name == "keep_tag":
            values["keep_tags"].append(value)
        else:
            values[name] = value if name.startswith("keep_within") else int(value)
    return Policy(**values)


@pytest.fixture(scope="module")
def restic(tmp_path_factory) -> ResticRepo:
    if not restic_helpers.available():
        pytest.skip("restic not installed")
    return ResticRepo(tmp_path_factory.mktemp("restic"))


@needs_restic
@pytest.mark.slow
def test_kept_set_equals_restic_forget_for_real_restic_backups(restic):
    """Backups made by `restic backup --time` (a month boundary, an ISO-week boundary, two in
    one hour, a tagged one), then every flag set asked of `restic forget` and of ours."""
    times = [
        datetime(2020, 12, 28, 9, 0),
        datetime(2020, 12, 31, 23, 30),
        datetime(2021, 1, 1, 0, 10),
        datetime(2021, 1, 3, 18, 0),
        datetime(2021, 1, 4, 6, 0),
        datetime(2021, 1, 4, 6, 40),
    ]
    ours = []
    for i, t in enumerate(times):
        t = t.replace(tzinfo=UTC)
        tags = ["env=prod"] if i == 1 else []
        restic.backup(t, host="real", tags=tags)
        ours.append(meta(t, n=i, tags=dict(x.split("=", 1) for x in tags)))
    for flags in FLAG_SETS:
        theirs = restic.forget_kept(flags, host="real")
        mine = {m.created_at for m in ours if rule_reasons(ours, policy_of(flags))[m.id]}
        assert mine == theirs, flags


def _instants():
    """Times over about three years, clustered so that hours, days and weeks repeat."""
    base = datetime(2019, 12, 20, tzinfo=UTC)
    return st.builds(
        lambda d, h, m: base + timedelta(days=d, hours=h, minutes=m),
        st.one_of(st.integers(0, 40), st.integers(0, 1100)),
        st.integers(0, 23),
        st.sampled_from([0, 1, 59]),
    )


def _spans():
    return st.builds(
        lambda y, m, d, h: (
            "".join(f"{n}{u}" for n, u in zip((y, m, d, h), "ymdh", strict=True) if n) or "1h"
        ),
        st.integers(0, 1),
        st.integers(0, 3),
        st.integers(0, 12),
        st.integers(0, 30),
    )


_RULES = {
    "--keep-last": st.integers(1, 6).map(str),
    "--keep-hourly": st.integers(1, 6).map(str),
    "--keep-daily": st.integers(1, 6).map(str),
    "--keep-weekly": st.integers(1, 4).map(str),
    "--keep-monthly": st.integers(1, 4).map(str),
    "--keep-yearly": st.integers(1, 2).map(str),
    "--keep-within": _spans(),
    "--keep-within-hourly": _spans(),
    "--keep-within-daily": _spans(),
    "--keep-within-weekly": _spans(),
    "--keep-within-monthly": _spans(),
    "--keep-within-yearly": _spans(),
    "--keep-tag": st.just("env=prod"),
}


@st.composite
def _flags(draw) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(_RULES)), min_size=1, max_size=3, unique=True))
    return [x for name in names for x in (name, draw(_RULES[name]))]


@needs_restic
@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sets=st.lists(
        st.lists(_instants(), min_size=1, max_size=25, unique=True), min_size=3, max_size=3
    ),
    flags=_flags(),
    tagged=st.lists(st.integers(0, 24), max_size=3),
)
def test_kept_set_equals_restic_forget_on_random_backup_sets(restic, sets, flags, tagged):
    """Three random sets per example (one restic host each), random rules: the kept sets are
    restic's, for each set."""
    restic.clear()
    try:
        for host, times in enumerate(sets):
            ours = []
            for i, t in enumerate(times):
                tags = {"env": "prod"} if i in tagged else {}
                restic.snapshot(t, host=f"r{host}", tags=[f"{k}={v}" for k, v in tags.items()])
                ours.append(meta(t, n=i, tags=tags))
            reasons = rule_reasons(ours, policy_of(flags))
            mine = {m.created_at for m in ours if reasons[m.id]}
            assert mine == restic.forget_kept(flags, host=f"r{host}"), (flags, times)
    finally:
        restic.clear()


@needs_restic
def test_a_backup_exactly_at_the_window_edge_is_outside_it_as_in_restic(restic):
    newest = datetime(2021, 3, 31, 12, tzinfo=UTC)
    times = [newest, Span.parse("1m2d").before(newest), newest - timedelta(days=3, seconds=1)]
    restic.clear()
    try:
        ours = [meta(t, n=i) for i, t in enumerate(times)]
        for t in times:
            restic.snapshot(t, host="edge")
        # 1m2d before 31 March 12:00 is 1 March 12:00 (Go's 29 February, carried forward)
        assert times[1] == datetime(2021, 3, 1, 12, tzinfo=UTC)
        expected = {
            ("--keep-within", "1m2d"): {newest, times[2]},
            ("--keep-within", "3d"): {newest},
        }
        for flags, want in expected.items():
            reasons = rule_reasons(ours, policy_of(list(flags)))
            mine = {m.created_at for m in ours if reasons[m.id]}
            assert mine == restic.forget_kept(list(flags), host="edge") == want, flags
    finally:
        restic.clear()


_STATUSES = [BackupStatus.COMPLETED] * 4 + [BackupStatus.FAILED, BackupStatus.RUNNING]


@st.composite
def _backups(draw) -> list[BackupMetadata]:
    times = draw(st.lists(_instants(), min_size=1, max_size=30, unique=True))
    out = []
    for i, t in enumerate(times):
        status = draw(st.sampled_from(_STATUSES))
        kind = draw(st.sampled_from([BackupType.FULL] * 4 + [BackupType.CHECKPOINT]))
        protected = status == BackupStatus.COMPLETED and draw(st.integers(0, 9)) == 0
        tags = {"env": "prod"} if draw(st.integers(0, 4)) == 0 else {}
        out.append(meta(t, n=i, status=status, type=kind, tags=tags, protected=protected))
    return out


@settings(max_examples=60, deadline=None)
@given(
    backups=_backups(),
    flags=st.one_of(st.just(["--keep-tag", "env=prod"]), _flags()),
    checkpoints=st.sampled_from([None, "1", "2", "3d"]),
)
def test_the_guarantees_hold_for_any_backups_and_rules(backups, flags, checkpoints):
    """Whatever the backups and the rules: the newest completed backup, protected ones and
    those in progress are kept; a failed one goes only when a newer backup completed;
    checkpoints are judged by their own rule alone; a policy is refused exactly when its rules
    keep no completed backup."""
    policy = policy_of(flags).model_copy(update={"keep_checkpoints": checkpoints})
    done = [m for m in backups if m.status == BackupStatus.COMPLETED]
    ordinary = [m for m in done if m.type != BackupType.CHECKPOINT]
    rules = rule_reasons(ordinary, policy)
    if ordinary and not any(rules.values()):
        with pytest.raises(RetentionRefused):
            evaluate(backups, policy)
        return
    decisions = {d.backup_id: d for d in evaluate(backups, policy)}
    assert set(decisions) == {m.id for m in backups}
    newest = max(ordinary, key=lambda m: (m.created_at, m.id), default=None)
    for m in backups:
        d = decisions[m.id]
        assert d.keep == bool(
            m.protected
            or m.status == BackupStatus.RUNNING
            or (newest is not None and m.id == newest.id)
            or (
                m.type != BackupType.CHECKPOINT
                and m.status == BackupStatus.COMPLETED
                and rules[m.id]
            )
            or (
                m.type == BackupType.CHECKPOINT
                and m.status == BackupStatus.COMPLETED
                and _cp_keeps(m, done, checkpoints)
            )
            or (
                m.status == BackupStatus.FAILED
                and not any(o.created_at > m.created_at for o in done)
            )
        ), (m, d)
        assert d.reasons  # every decision says why


def _cp_keeps(m: BackupMetadata, done: list[BackupMetadata], rule: str | None) -> bool:
    cps = sorted(
        (c for c in done if c.type == BackupType.CHECKPOINT),
        key=lambda c: (c.created_at, c.id),
        reverse=True,
    )
    if rule is None:
        return True
    if rule.isdigit():
        return m in cps[: int(rule)]
    return m.created_at > Span.parse(rule).before(cps[0].created_at)
