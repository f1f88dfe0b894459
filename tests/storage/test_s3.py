"""The S3 store against a real SeaweedFS on 127.0.0.1: what the contract suite cannot say
(errors of a real server, multipart, the conditional-write probe, faults on the wire)."""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from storage.faultproxy import (
    DELAY,
    ERROR_503,
    FAKE_SUCCESS,
    PASS,
    RESET_AFTER,
    TRUNCATE,
    FaultProxy,
    random_faults,
)
from storage.seaweed import SeaweedServer, free_ports
from storage.seaweed import cli as _cli

from core.errors import InvalidInput, NexusError
from core.repo.repository import Repository
from core.storage import (
    ObjectExists,
    ObjectNotFound,
    StoreError,
    StoreUnavailable,
    UnsafeSharing,
    open_store,
)
from core.storage.s3 import PART_SIZE, S3Store


def _store(server: SeaweedServer, **env: str) -> S3Store:
    return S3Store.from_url(server.url(f"t-{secrets.token_hex(6)}"), {**server.env(), **env})


def _one_line(exc: BaseException, *words: str) -> None:
    text = str(exc)
    assert "\n" not in text and len(text) < 400, text
    for word in words:
        assert word in text, text


def test_open_store_opens_the_bucket_from_the_aws_variables(s3_url: str) -> None:
    store = open_store(s3_url)
    assert isinstance(getattr(store, "_inner", store), S3Store)  # behind the local cache
    assert store.url == s3_url
    store.prepare()
    store.put("config.json", b"{}")
    assert open_store(s3_url).get("config.json") == b"{}"


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "SignatureDoesNotMatch"),
        ({"AWS_ACCESS_KEY_ID": "nobody"}, "InvalidAccessKeyId"),
    ],
)
def test_wrong_credentials_are_one_clear_line(
    seaweed: SeaweedServer, env: dict[str, str], why: str
) -> None:
    store = _store(seaweed, **env)
    for op in (store.prepare, lambda: store.get("x"), lambda: store.put("x", b"x"), store.list):
        with pytest.raises(StoreUnavailable) as caught:
            list(op() or ())
        _one_line(caught.value, "credentials", why, seaweed.bucket, seaweed.endpoint)


def test_an_unknown_bucket_is_one_clear_line(seaweed: SeaweedServer) -> None:
    store = S3Store.from_url("s3://no-such-bucket/p", seaweed.env())
    for op in (store.prepare, lambda: store.put("x", b"x"), store.children):
        with pytest.raises(StoreUnavailable) as caught:
            op()
        _one_line(caught.value, "no-such-bucket", "does not exist", seaweed.endpoint)


def test_missing_credentials_are_refused_before_any_request(seaweed: SeaweedServer) -> None:
    env = {k: v for k, v in seaweed.env().items() if not k.startswith("AWS_SECRET")}
    with pytest.raises(StoreUnavailable) as caught:
        S3Store.from_url(seaweed.url("p"), env)
    _one_line(caught.value, "AWS_SECRET_ACCESS_KEY")
    env = {k: v for k, v in env.items() if k != "AWS_ACCESS_KEY_ID"}
    with pytest.raises(StoreUnavailable) as caught:
        S3Store.from_url(seaweed.url("p"), env)
    _one_line(caught.value, "no credentials")


def test_plain_http_is_only_for_loopback_unless_allowed() -> None:
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    with pytest.raises(InvalidInput, match="in clear"):
        S3Store.from_url("s3://bkt/p", {**env, "AWS_ENDPOINT_URL": "http://192.0.2.1:9000"})
    allowed = {**env, "AWS_ENDPOINT_URL": "http://192.0.2.1:9000", "AWS_ALLOW_HTTP": "true"}
    assert S3Store.from_url("s3://bkt/p", allowed).url == "s3://bkt/p"
    with pytest.raises(InvalidInput):
        S3Store.from_url("s3:///p", env)


def test_an_unreachable_endpoint_fails_in_seconds() -> None:
    (port,) = free_ports(1)  # nothing listens there: every connect is refused
    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    store = S3Store.from_url("s3://bucket/p", env)
    began = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.get("config.json")
    elapsed = time.monotonic() - began
    _one_line(caught.value, "cannot reach", f"127.0.0.1:{port}", "retries")
    assert elapsed < 5, f"{elapsed:.1f}s to give up on a closed port"


def test_put_file_uploads_multipart_and_consumes_the_file(seaweed: SeaweedServer) -> None:
    store = _store(seaweed)
    store.prepare()
    data = os.urandom(2 * PART_SIZE + 12345)
    spooled = store.spool() / f"pack.tmp-{secrets.token_hex(4)}"
    spooled.write_bytes(data)
    store.put_file("packs/ab/abcd", spooled)
    assert not spooled.exists()
    assert store.get("packs/ab/abcd") == data
    assert store.stat("packs/ab/abcd").size == len(data)
    asked = [(PART_SIZE - 10, 20), (0, 5), (len(data) - 7, 7)]
    assert store.read_ranges("packs/ab/abcd", asked) == [data[o : o + n] for o, n in asked]


def test_stat_has_the_server_clock_and_an_etag_that_changes(seaweed: SeaweedServer) -> None:
    store = _store(seaweed)
    store.put("settings.json", b"one")
    first = store.stat("settings.json")
    assert abs(first.mtime - time.time()) < 60
    assert first.etag
    store.put("settings.json", b"two")
    assert store.stat("settings.json").etag != first.etag
    assert [o.etag for o in store.list("settings")] == [store.stat("settings.json").etag]


def test_seaweedfs_enforces_conditional_writes(seaweed: SeaweedServer) -> None:
    store = _store(seaweed)
    store.prepare()
    assert store.check_conditional_writes() is True
    assert store.capabilities.conditional_create is True
    assert store.children() == []  # the probe left nothing behind
    assert store.remove_partials() == 0


def test_a_server_that_ignores_if_none_match_is_refused(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """Through a proxy that turns the server's 412 into 200 (a server ignoring the
    precondition, as the client sees it): the probe says so and no repository is made."""
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    with FaultProxy(upstream, lambda method, path: FAKE_SUCCESS) as proxy:
        env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        store = S3Store.from_url(seaweed.url(f"t-{secrets.token_hex(6)}"), env)
        assert store.check_conditional_writes() is False
        assert store.capabilities.conditional_create is False
        repo = Repository(tmp_path, "web", store=store.sub("web"))
        with pytest.raises(UnsafeSharing) as caught:
            repo.init()
        assert isinstance(caught.value, NexusError)
        _one_line(caught.value, "does not enforce conditional writes", proxy.endpoint)
        assert store.children() == []


def test_put_new_keeps_the_first_writer_and_accepts_its_own_retry(seaweed: SeaweedServer) -> None:
    store = _store(seaweed)
    store.put_new("locks/a", b"mine")
    store.put_new("locks/a", b"mine")  # the same bytes: a retry whose first try landed
    with pytest.raises(ObjectExists):
        store.put_new("locks/a", b"theirs")
    assert store.get("locks/a") == b"mine"


def test_an_outage_is_not_an_absent_object(seaweed: SeaweedServer) -> None:
    """ObjectNotFound is for absent objects only: a refused connection is StoreUnavailable,
    so that nothing reads 'no repository here' into an outage."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    store = S3Store.from_url(seaweed.url("p"), env)
    with pytest.raises(StoreUnavailable):
        store.exists("config.json")
    with pytest.raises(StoreUnavailable):
        store.children()


@pytest.mark.parametrize(("seed", "rate", "ops"), [(1, 0.3, 24), (2, 0.3, 24), (3, 0.8, 12)])
def test_faults_on_the_wire_never_give_wrong_bytes(
    seaweed: SeaweedServer, seed: int, rate: float, ops: int
) -> None:
    """Resets, delays, 503s and truncated bodies at random: every operation either works
    with the right bytes or fails with one StoreError line (at a high rate, some do)."""
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    rng = random.Random(seed)
    with FaultProxy(upstream, random_faults(rate, seed), delay=0.05) as proxy:
        env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        store = S3Store.from_url(seaweed.url(f"t-{secrets.token_hex(6)}"), env)
        maybe: dict[str, set[bytes]] = {}  # what each name may hold after a failed write
        failures = 0
        for i in range(ops):
            name = f"obj/{rng.randrange(4)}"
            data = rng.randbytes(rng.choice([0, 100, 70_000]))
            try:
                if i % 3 == 0 or name not in maybe:
                    store.put(name, data)
                    maybe[name] = {data}
                elif i % 3 == 1:
                    assert store.get(name) in maybe[name]
                else:
                    (got,) = store.read_ranges(name, [(0, 50)])
                    assert any(got == d[:50] for d in maybe[name] if len(d) >= 50)
            except EOFError:  # a range past a short object: not a fault
                assert any(len(d) < 50 for d in maybe[name])
            except StoreError as exc:
                failures += 1
                _one_line(exc)
                if i % 3 == 0 or name not in maybe:
                    maybe.setdefault(name, set()).add(data)
        assert sum(proxy.injected.values()) > 0
    if rate < 0.5:  # with bounded retries most operations come through
        assert failures < ops // 2, (failures, proxy.injected)


def test_absent_object_through_a_proxy_is_still_not_found(seaweed: SeaweedServer) -> None:
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    with FaultProxy(upstream, lambda method, path: PASS) as proxy:
        env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        store = S3Store.from_url(seaweed.url(f"t-{secrets.token_hex(6)}"), env)
        with pytest.raises(ObjectNotFound):
            store.get("nope")


def _proxied(server: SeaweedServer, proxy: FaultProxy, prefix: str | None = None) -> S3Store:
    env = {**server.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
    return S3Store.from_url(server.url(prefix or f"t-{secrets.token_hex(6)}"), env)


def _first(method: str, action: str):
    """A chooser that applies `action` to the first request of `method` only."""
    done: list[bool] = []

    def choose(m: str, path: str) -> str:
        if m == method and not done:
            done.append(True)
            return action
        return PASS

    return choose


def test_a_write_whose_answer_was_lost_is_done_again(seaweed: SeaweedServer) -> None:
    """The server carried out the PUT, the connection broke before its answer: obstore does
    not retry a sent request, the store does (the same object either way), and put_new
    finds its own bytes there rather than reporting a loss."""
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    prefix = f"t-{secrets.token_hex(6)}"
    direct = S3Store.from_url(seaweed.url(prefix), seaweed.env())
    with FaultProxy(upstream, _first("PUT", RESET_AFTER)) as proxy:
        _proxied(seaweed, proxy, prefix).put_new("locks/a", b"mine")
        assert proxy.injected[RESET_AFTER] == 1
    assert direct.get("locks/a") == b"mine"
    with FaultProxy(upstream, _first("PUT", RESET_AFTER)) as proxy:
        _proxied(seaweed, proxy, prefix).put("config.json", b"{}")
        assert proxy.injected[RESET_AFTER] == 1
    assert direct.get("config.json") == b"{}"


def test_truncated_bodies_and_503s_are_retried_then_fail_cleanly(seaweed: SeaweedServer) -> None:
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    prefix = f"t-{secrets.token_hex(6)}"
    data = os.urandom(100_000)
    S3Store.from_url(seaweed.url(prefix), seaweed.env()).put("pack", data)
    with FaultProxy(upstream, _first("GET", TRUNCATE)) as proxy:
        assert _proxied(seaweed, proxy, prefix).get("pack") == data  # the retry got it all
    with FaultProxy(upstream, _first("GET", ERROR_503)) as proxy:
        assert _proxied(seaweed, proxy, prefix).get_range("pack", 5, 10) == data[5:15]
    with FaultProxy(upstream, lambda m, p: TRUNCATE if m == "GET" else PASS) as proxy:
        began = time.monotonic()
        with pytest.raises(StoreError) as caught:
            _proxied(seaweed, proxy, prefix).get("pack")
        assert time.monotonic() - began < 5
        _one_line(caught.value, "connection to the server failed")
        assert proxy.injected[TRUNCATE] > 1  # obstore tried again


@pytest.mark.slow
def test_a_killed_server_fails_cleanly_and_keeps_what_was_written(
    private_seaweed: SeaweedServer,
) -> None:
    server = private_seaweed
    store = S3Store.from_url(server.url("p"), server.env())
    store.prepare()
    data = os.urandom(300_000)
    store.put("packs/ab/1", data)
    store.put_new("locks/x", b"lock")
    server.kill()
    for op in (lambda: store.get("packs/ab/1"), lambda: store.put("y", b"y"), store.children):
        began = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            op()
        assert time.monotonic() - began < 5
        _one_line(caught.value, "cannot reach the server", server.endpoint)
    server.restart()
    assert store.get("packs/ab/1") == data
    assert store.read_ranges("packs/ab/1", [(1000, 10)]) == [data[1000:1010]]
    with pytest.raises(ObjectExists):
        store.put_new("locks/x", b"other")
    assert store.children() == ["locks", "packs"]


def test_deletes_never_reach_beyond_their_name_or_prefix(seaweed: SeaweedServer) -> None:
    """SeaweedFS keeps objects as files in directories: deleting the key `packs` (a
    directory there) must not take `packs/...` with it, and a view's delete_prefix and
    remove_partials must not touch a sibling whose name merely starts the same."""
    root = _store(seaweed)
    for name in ["packs/ab/1", "packs/cd/2", "p/x/1", "p2/x/1", "p/keep"]:
        root.put(name, b"1")
    root.delete("packs")
    root.delete("packs/ab")
    root.sub("p").delete_prefix("x/")
    root.sub("p").remove_partials()
    for bad in ("", "/", "..", "x/../.."):
        with pytest.raises(ValueError):
            root.delete_prefix(bad)
    assert [o.name for o in root.list()] == ["p/keep", "p2/x/1", "packs/ab/1", "packs/cd/2"]


def test_remove_partials_removes_a_probe_left_by_a_crash(seaweed: SeaweedServer) -> None:
    store = _store(seaweed)
    store.put("config.json", b"{}")
    store.put(".tmp-probe-left", b"1")  # what a writer killed mid-probe leaves
    assert store.children() == ["config.json"]
    assert [o.name for o in store.list()] == ["config.json"]
    assert store.remove_partials() == 1
    assert store.remove_partials() == 0
    assert store.get("config.json") == b"{}"


def test_urls_and_settings_are_checked_and_keep_the_secret_out_of_sight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "hush-hush",
        "AWS_REGION": "eu-west-3",
    }
    for bad in ("s3://Bad_Bucket/p", "s3://b/p", "s3://user@bucket/p", "s3://bucket/p?x=1"):
        with pytest.raises(InvalidInput):
            S3Store.from_url(bad, env)
    with pytest.raises(InvalidInput):
        S3Store.from_url("s3://bucket/a/../b", env)
    store = S3Store.from_url("s3://bucket/a/b/", env)
    assert store.url == "s3://bucket/a/b"
    assert store.sub("web").url == "s3://bucket/a/b/web"
    assert "hush-hush" not in repr(store._bucket.settings)
    assert "eu-west-3" in store.capabilities.server
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spool = S3Store.from_url("s3://bucket/p", env).spool()
    assert spool == tmp_path / "cache" / "nexus-backup" / "spool"
    assert spool.stat().st_mode & 0o777 == 0o700


@pytest.mark.slow
def test_a_writer_killed_mid_multipart_upload_leaves_nothing_visible(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """SIGKILL while the parts of a big pack are on their way: no object, no listing entry,
    and a new writer stores the pack afresh."""
    big = tmp_path / "pack.tmp-big"
    big.write_bytes(os.urandom(3 * PART_SIZE))
    parts = threading.Event()

    def slow_parts(method: str, path: str) -> str:
        if "partNumber" in path:
            parts.set()
            return DELAY
        return PASS

    url = seaweed.url(f"t-{secrets.token_hex(6)}")
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    with FaultProxy(upstream, slow_parts, delay=5) as proxy:
        env = {**os.environ, **seaweed.env(), "AWS_ENDPOINT_URL": proxy.endpoint}
        code = (
            "import sys; from pathlib import Path; from core.storage import open_store;"
            f"open_store({url!r}).put_file('packs/ab/big', Path({str(big)!r}))"
        )
        writer = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path.cwd())
        try:
            assert parts.wait(20), "the upload never sent a part"
        finally:
            writer.kill()
            writer.wait()
    store = S3Store.from_url(url, seaweed.env())
    assert not store.exists("packs/ab/big")
    assert list(store.list()) == [] and store.children() == []
    assert big.exists()  # the spooled file stays until an upload succeeds
    store.put_file("packs/ab/big", big)
    assert store.stat("packs/ab/big").size == 3 * PART_SIZE


async def test_a_second_host_behind_a_server_ignoring_if_none_match_may_read_not_write(
    seaweed: SeaweedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository was made where conditional writes hold; a host that reaches it through
    a server (here: a proxy) that ignores them is refused every write with one line, and
    still lists and restores."""
    from core.manager import BackupManager
    from core.models import CreateRequest, RestoreRequest

    url = seaweed.url(f"t-{secrets.token_hex(6)}")
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    meta = await BackupManager(tmp_path / "one", repository=url).create(
        CreateRequest(project_id="web", data_dir=str(data))
    )
    upstream = ("127.0.0.1", seaweed.ports["s3.port"])
    with FaultProxy(upstream, lambda method, path: FAKE_SUCCESS) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        other = BackupManager(tmp_path / "two", repository=url)
        with pytest.raises(UnsafeSharing, match="does not enforce conditional writes"):
            await other.create(CreateRequest(project_id="web", data_dir=str(data)))
        with pytest.raises(UnsafeSharing):
            await other.delete("web", meta.id)
        assert [m.id for m in await other.list("web")] == [meta.id]
        out = tmp_path / "out"
        await other.restore(
            RestoreRequest(project_id="web", backup_id=meta.id, restore_dir=str(out))
        )
        assert (out / "a.txt").read_text() == "alpha\n"


@pytest.mark.parametrize(
    "env",
    [{"AWS_SECRET_ACCESS_KEY": "wrong"}, {"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}],
    ids=["wrong-secret", "unreachable"],
)
def test_commands_over_every_project_fail_when_the_bucket_cannot_be_listed(
    seaweed: SeaweedServer, tmp_path: Path, env: dict[str, str]
) -> None:
    """A repository that cannot be listed is an error, never "no projects": `run-due` run by
    a timer would otherwise succeed while no backup can be made."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("hello")
    nb = _cli(seaweed, tmp_path)
    assert nb("create", "web", str(data)).returncode == 0
    for args in (["projects"], ["run-due"], ["stats"], ["find", "a.txt", "--all-projects"]):
        r = nb(*args, **env)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, (args, r.returncode, r.stdout, r.stderr)
        assert lines[0].startswith("nexus-backup: error: ") and "Traceback" not in r.stderr
    assert "web" in nb("projects").stdout


def test_an_object_shorter_than_a_pack_trailer_is_a_damaged_pack(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    """A 4-byte object under packs/ (a stray, or a pack the bucket truncated): reclaim
    refuses in one line, rebuild-index quarantines it, and the backup left restores."""
    data = tmp_path / "data"
    data.mkdir()
    repo = seaweed.url(f"t-{secrets.token_hex(6)}")
    nb = _cli(seaweed, tmp_path, repo)
    for k in range(2):
        (data / f"f{k}").write_bytes(os.urandom(300_000))
        assert nb("create", "p", str(data)).returncode == 0
    S3Store.from_url(repo, seaweed.env()).put(f"backups/p/packs/ab/ab{'0' * 62}", b"junk")
    newest, oldest = (b["id"] for b in json.loads(nb("--json", "list", "p").stdout))
    r = nb("delete", "p", oldest)
    assert r.returncode == 1 and "shorter than its trailer" in r.stderr, r.stderr
    assert "internal error" not in r.stderr
    r = nb("rebuild-index", "p")
    assert "internal error" not in r.stdout + r.stderr and "quarantine" in r.stdout, r.stdout
    r = nb("restore", "p", newest, str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == {
        p.name: p.read_bytes() for p in data.iterdir()
    }
