"""The contract every ObjectStore keeps (after restic's internal/backend/test): the engine
relies on exactly these behaviours and nothing else, so a store that passes this file can
hold a repository. Runs once per store in conftest.STORES."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core.storage import ObjectExists, ObjectNotFound, ObjectStore, StoreError


def test_put_get_round_trip_and_replace(store: ObjectStore) -> None:
    store.put("config.json", b"one")
    assert store.get("config.json") == b"one"
    store.put("config.json", b"two, longer")
    assert store.get("config.json") == b"two, longer"
    assert store.stat("config.json").size == len(b"two, longer")
    store.put("empty", b"")
    assert store.get("empty") == b""


def test_absent_objects_raise_object_not_found(store: ObjectStore) -> None:
    for read in (
        lambda: store.get("nope"),
        lambda: store.get("dir/nope"),
        lambda: store.get_range("nope", 0, 1),
        lambda: store.read_ranges("nope", [(0, 1)]),
        lambda: store.stat("nope"),
    ):
        with pytest.raises(ObjectNotFound):
            read()
    assert issubclass(ObjectNotFound, StoreError)
    assert not store.exists("nope")
    store.delete("nope")  # absent is fine


def test_object_below_an_object_name_is_absent(store: ObjectStore) -> None:
    store.put("a", b"x")
    with pytest.raises(ObjectNotFound):
        store.get("a/b")


def test_ranges(store: ObjectStore) -> None:
    data = bytes(range(256)) * 64
    store.put("packs/ab/pack", data)
    assert store.get_range("packs/ab/pack", 10, 5) == data[10:15]
    asked = [(5000, 100), (0, 10), (4999, 3), (16000, 384), (300, 0)]
    got = store.read_ranges("packs/ab/pack", asked)
    assert got == [data[o : o + n] for o, n in asked]
    with store.reader() as reader:  # type: ignore[attr-defined]
        assert reader.get_range("packs/ab/pack", 1, 2) == data[1:3]
        assert reader.read_ranges("packs/ab/pack", asked) == got
    # runs of neighbours (small chunks side by side, then large ones), as a restore asks
    big = bytes(range(256)) * 4096  # 1 MiB
    store.put("packs/ab/big", big)
    asked = [(0, 10), (10, 20), (30, 1), (31, 0), (31, 70000), (70031, 5), (70036, 65535)]
    asked += [(200000, 3), (200003, 300000), (500003, 100), (900000, 148576)]
    with store.reader() as reader:  # type: ignore[attr-defined]
        assert reader.read_ranges("packs/ab/big", asked) == [big[o : o + n] for o, n in asked]
        with pytest.raises(EOFError):  # a run reaching past the end is short, not cut
            reader.read_ranges("packs/ab/big", [(len(big) - 10, 5), (len(big) - 5, 6)])


def test_short_range_is_an_eof_error(store: ObjectStore) -> None:
    store.put("obj", b"0123456789")
    with pytest.raises(EOFError):
        store.get_range("obj", 8, 5)
    with pytest.raises(EOFError):
        store.read_ranges("obj", [(0, 2), (9, 4)])
    with pytest.raises(EOFError):  # before the start (a size read from a damaged object)
        store.get_range("obj", -4, 4)


def test_put_new_creates_once(store: ObjectStore) -> None:
    store.put_new("locks/a", b"first")
    with pytest.raises(ObjectExists):
        store.put_new("locks/a", b"second")
    assert store.get("locks/a") == b"first"


def test_put_new_races_have_one_winner(store: ObjectStore) -> None:
    wins: list[int] = []
    start = threading.Barrier(8)

    def race(i: int) -> None:
        start.wait()
        try:
            store.put_new("locks/exclusive", str(i).encode())
            wins.append(i)
        except ObjectExists:
            pass

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get("locks/exclusive") == str(wins[0]).encode()


def test_put_file_consumes_the_spooled_file(store: ObjectStore) -> None:
    spooled = Path(store.spool()) / "pack.tmp-abc"
    spooled.write_bytes(b"pack bytes")
    store.put_file("packs/cd/cdef", spooled)
    assert store.get("packs/cd/cdef") == b"pack bytes"
    assert not spooled.exists()
    assert [o.name for o in store.list("packs/")] == ["packs/cd/cdef"]


def test_put_file_of_a_spooled_file_removed_meanwhile_is_a_store_error(store: ObjectStore) -> None:
    """Another process removed it (it judged this writer's lock stale): one line, no object."""
    gone = Path(store.spool()) / "pack.tmp-gone"
    with pytest.raises(StoreError, match="removed by another process"):
        store.put_file("packs/cd/gone", gone)
    assert not store.exists("packs/cd/gone")


def test_list_is_sorted_complete_and_prefix_exact(store: ObjectStore) -> None:
    names = ["packs/ab/2", "packs/ab/1", "packs/cd/3", "index/x", "packsfoo", "backup_1/a"]
    for n in names:
        store.put(n, n.encode())
    assert [o.name for o in store.list("packs/")] == ["packs/ab/1", "packs/ab/2", "packs/cd/3"]
    assert [o.name for o in store.list("packs")] == [
        "packs/ab/1",
        "packs/ab/2",
        "packs/cd/3",
        "packsfoo",
    ]
    assert [o.name for o in store.list()] == sorted(names)
    info = {o.name: o for o in store.list()}
    assert info["index/x"].size == len(b"index/x")
    assert info["index/x"].mtime > 0


def test_children_are_one_level(store: ObjectStore) -> None:
    for n in ["backup_1/metadata.json", "backup_1/data/manifest.zst", "backup_2/x", "config.json"]:
        store.put(n, b"x")
    assert store.children() == ["backup_1", "backup_2", "config.json"]
    assert store.children("backup_1/") == ["data", "metadata.json"]
    assert store.children("backup_1") == ["data", "metadata.json"]
    assert store.children("nothing/") == []


def test_delete_and_delete_prefix(store: ObjectStore) -> None:
    for n in ["backup_1/metadata.json", "backup_1/data/manifest.zst", "backup_10/x", "keep"]:
        store.put(n, b"x")
    store.delete("keep")
    assert not store.exists("keep")
    store.delete_prefix("backup_1/")
    assert [o.name for o in store.list()] == ["backup_10/x"]
    assert store.children() == ["backup_10"]


def test_sub_views_are_isolated_and_share_objects(store: ObjectStore) -> None:
    a, b = store.sub("backups/a"), store.sub("backups/b")
    a.prepare()
    b.prepare()
    a.put("config.json", b"a")
    b.put("config.json", b"b")
    assert a.get("config.json") == b"a"
    assert [o.name for o in a.list()] == ["config.json"]
    assert store.get("backups/a/config.json") == b"a"
    assert store.children("backups/") == ["a", "b"]
    assert a.url != b.url


@pytest.mark.parametrize("bad", ["", "/abs", "a//b", "../x", "a/../b", "./a", "a/."])
def test_names_that_could_escape_are_refused(store: ObjectStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.put(bad, b"x")
    with pytest.raises(ValueError):
        store.get(bad)


def test_remove_partials_keeps_complete_objects(store: ObjectStore) -> None:
    store.put("packs/ab/1", b"x")
    store.remove_partials()
    assert store.get("packs/ab/1") == b"x"


def test_capabilities_are_declared(store: ObjectStore) -> None:
    caps = store.capabilities
    assert isinstance(caps.conditional_create, bool)
    assert caps.coalesce_gap >= 0
    assert caps.local_root is None or Path(caps.local_root).is_dir()


def test_put_if_unchanged_is_a_compare_and_swap(store: ObjectStore) -> None:
    store.put_if_unchanged("project.json", b"v1", None)  # absent: created
    with pytest.raises(ObjectExists):
        store.put_if_unchanged("project.json", b"v1 again", None)
    etag = store.stat("project.json").etag
    store.put_if_unchanged("project.json", b"v2", etag)
    assert store.get("project.json") == b"v2"
    with pytest.raises(ObjectExists):
        store.put_if_unchanged("project.json", b"v3", etag)  # a stale etag loses
    assert store.get("project.json") == b"v2"


def test_read_modify_write_races_lose_no_update(store: ObjectStore) -> None:
    """Four writers each add five increments to one counter through put_if_unchanged,
    retrying when they lose: every increment lands."""
    store.put("counter", b"0")
    start = threading.Barrier(4)

    def add(times: int) -> None:
        start.wait()
        for _ in range(times):
            while True:
                etag = store.stat("counter").etag
                value = int(store.get("counter"))
                try:
                    store.put_if_unchanged("counter", str(value + 1).encode(), etag)
                    break
                except ObjectExists:
                    continue

    threads = [threading.Thread(target=add, args=(5,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(store.get("counter")) == 20
